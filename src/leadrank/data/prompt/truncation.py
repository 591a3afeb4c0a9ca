"""A dialogue split into turns and truncated to a token budget, newest turns kept.

:func:`truncate_dialogue` cuts one dialogue; :func:`fit_dialogues` does the same for many at
once (batched tokenizer calls, and a memo of the dialogues already cut), for ``build_prompts``.
"""

from __future__ import annotations

import hashlib
import numbers
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import accumulate, pairwise
from typing import Any

from leadrank.errors import ConfigurationError

__all__ = ["check_budget", "fit_dialogues", "split_turns", "truncate_dialogue"]

#: Rows tokenized per call when build_prompts measures dialogues.
_BATCH = 512
#: Characters of the newest turns first measured per token of budget; grown 4x while too few.
_CHARS_PER_TOKEN = 8
#: A generous upper bound on the characters one token stands for (English text averages about 4).
#: With a budget of B tokens, a turn longer than ``_MAX_CHARS_PER_TOKEN * (B + 1)`` characters
#: cannot fit, so only its end is kept for truncation: the cost follows the budget, not the turn.
_MAX_CHARS_PER_TOKEN = 64
#: Put in front of the end kept of such a turn, so that the cut shows even where a tokenizer
#: packs more characters into a token than the bound assumes.
_TURN_CUT = "[... start of the turn omitted] "


def split_turns(dialogue: str) -> list[str]:
    """Turns oldest first: one per non-blank line, surrounding whitespace stripped."""
    text = dialogue.replace("\r\n", "\n").replace("\r", "\n")
    return [line.strip() for line in text.split("\n") if line.strip()]


def _marker(omitted_turns: int, newest_cut: bool = False) -> str:
    if newest_cut:
        if omitted_turns == 0:
            return "[... start of the turn omitted]"
        noun = "turn" if omitted_turns == 1 else "turns"
        return f"[... {omitted_turns} earlier {noun} and the start of the newest turn omitted]"
    noun = "turn" if omitted_turns == 1 else "turns"
    return f"[... {omitted_turns} earlier {noun} omitted]"


def _encode(tokenizer: Any, texts: str | list[str], **kwargs: Any) -> Any:
    return tokenizer(texts, add_special_tokens=False, verbose=False, **kwargs)


def _count(tokenizer: Any, text: str) -> int:
    return len(_encode(tokenizer, text)["input_ids"]) if text else 0


def _measure(tokenizer: Any, texts: list[str]) -> list[tuple[int, list[int] | None]]:
    """Token count of each text and, for fast tokenizers, the start offset of each token."""
    if getattr(tokenizer, "is_fast", False):
        encoded = _encode(tokenizer, texts, return_offsets_mapping=True)
        return [
            (len(ids), [start for start, _ in offsets])
            for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
        ]
    return [(len(ids), None) for ids in _encode(tokenizer, texts)["input_ids"]]


def check_budget(tokenizer: Any, max_tokens: Any, name: str) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral) or max_tokens < 0:
        raise ConfigurationError(f"{name} must be a whole number of tokens >= 0 (or None for no limit); got {max_tokens!r}")
    if tokenizer is None:
        raise ConfigurationError(
            f"{name}={max_tokens} needs a tokenizer to count tokens; pass the backbone's tokenizer "
            f"(e.g. tokenizer=AutoTokenizer.from_pretrained(model_dir)) or set {name}=None for no truncation"
        )


def truncate_dialogue(dialogue: str, tokenizer: Any, max_tokens: int) -> str:
    """Keep the newest turns of ``dialogue`` that fit in ``max_tokens`` tokens.

    Turns are lines (oldest first); blank lines are dropped and each line is stripped.
    If the whole dialogue fits it is returned as is (normalised). Otherwise the oldest turns
    are cut first, at line boundaries, and a marker line ``"[... N earlier turns omitted]"``
    goes on top; the marker counts against the budget. When not even the newest turn fits
    next to the marker, the last tokens of the newest turn are kept (its newest words),
    behind ``"[... N earlier turns and the start of the newest turn omitted]"``. The marker
    is left out only when the budget cannot hold it plus one token of dialogue.

    Tokens are counted as ``len(tokenizer(text, add_special_tokens=False)["input_ids"])``.
    Only the newest turns are tokenized to choose the cut, about ``8 * max_tokens``
    characters' worth (more if they hold fewer than ``max_tokens`` tokens), so the cost
    follows the budget, not the dialogue length; the token offsets say how many tokens each
    turn takes (tokenizers without offsets tokenize each of those turns once instead).
    Because BPE counts are not additive across joins, the result is then re-tokenized and
    more is cut until it fits: it never has more than ``max_tokens`` tokens. Typically
    two or three tokenizer calls per dialogue.

    One long turn is bounded too: a turn longer than ``64 * (max_tokens + 1)`` characters
    (:data:`_MAX_CHARS_PER_TOKEN`, a generous most-characters-per-token) cannot fit the budget,
    so only that many of its last characters are kept before tokenizing, behind
    ``"[... start of the turn omitted] "``. Truncation keeps at most the newest tokens of such
    a turn (or drops it whole when it is not the newest), so the result is unchanged, and the
    characters tokenized follow the budget, not the length of a turn or of the dialogue.
    (A tokenizer packing more characters into its tokens may fit the kept end whole: the
    words in front of it still show the cut.)

    The result is the same as if the whole dialogue had been tokenized, provided the text
    before a line break never changes how the lines after it are tokenized. That holds for
    byte-level BPE tokenizers (GPT-2, SmolLM2, Llama 3, Qwen2) and word-level ones, whose
    pre-tokenizers split at line breaks.

    Parameters
    ----------
    dialogue : str
        Speaker-tagged turns separated by newlines, oldest first.
    tokenizer : PreTrainedTokenizerBase
        The backbone's tokenizer (fast tokenizers keep the exact original text of a cut
        turn via offsets; others decode the kept tokens).
    max_tokens : int
        Budget, >= 0. ``0`` returns ``''``.

    Raises
    ------
    ConfigurationError
        (a ``ValueError``) ``tokenizer`` is None, or ``max_tokens`` is negative or not an integer.
    """
    check_budget(tokenizer, max_tokens, "max_tokens")
    turns = split_turns(dialogue)
    if max_tokens == 0 or not turns:
        return ""
    return _fit(_cap_turns(turns, max_tokens), tokenizer, max_tokens, _CHARS_PER_TOKEN * (max_tokens + 1))


# Why the newest turns can stand in for the whole dialogue: ``_cut`` asks ``tokens_from(i)``
# only for the newest two turns and for turns i with ``tokens_from(i + 1) <= max_tokens``
# (turns i + 1.. fit the budget, or were kept in a candidate that fit). Counts only grow
# with older turns, so once turns ``first..`` hold more than ``max_tokens`` tokens, ``_cut``
# never asks about (nor keeps) a turn older than ``first``: those need no tokenizing.


def _cap_turns(turns: list[str], max_tokens: int) -> list[str]:
    """Each turn over ``_MAX_CHARS_PER_TOKEN * (max_tokens + 1)`` characters cut to its end.

    A cut turn is at most that long: :data:`_TURN_CUT`, then the turn's last characters.
    """
    limit = _MAX_CHARS_PER_TOKEN * (max_tokens + 1)
    kept = limit - len(_TURN_CUT)
    return [turn if len(turn) <= limit else _TURN_CUT + turn[-kept:].lstrip() for turn in turns]


def _fit(turns: list[str], tokenizer: Any, max_tokens: int, chars: int) -> str:
    """:func:`truncate_dialogue` of split, capped turns; measures the newest ``chars`` characters first."""
    while True:
        first = _first_measured(turns, chars)
        [(count, starts)] = _measure(tokenizer, [_measured_text(turns, first)])
        shown = _settle(turns, tokenizer, max_tokens, first, count, starts)
        if shown is not None:
            return shown
        chars *= 4


def _first_measured(turns: list[str], chars: int) -> int:
    """The oldest turn to tokenize: the newest turns holding ``chars`` characters (0 = all).

    At least the newest two turns are measured when there are more than two.
    """
    size = 0
    for i in range(len(turns) - 1, 0, -1):
        size += len(turns[i]) + 1
        if size >= chars and i <= max(len(turns) - 2, 1):
            return i
    return 0


def _measured_text(turns: list[str], first: int) -> str:
    """The dialogue from the line break before turn ``first`` (all of it for ``first=0``).

    The line break is kept so that turn ``first`` is tokenized as it is in the whole text.
    """
    newest = "\n".join(turns[first:])
    return "\n" + newest if first else newest


def _settle(turns: list[str], tokenizer: Any, max_tokens: int, first: int, count: int, starts: list[int] | None) -> str | None:
    """The truncated dialogue, given the ``count`` and ``starts`` of ``_measured_text(turns, first)``.

    None when turns ``first..`` hold too few tokens to tell which of them to keep.
    """
    if first == 0 and count <= max_tokens:
        return "\n".join(turns)
    tokens_from = _token_index(turns, first, tokenizer, starts)
    if first and tokens_from(first) <= max_tokens:
        return None
    return _cut(turns, tokenizer, max_tokens, tokens_from)


def _token_index(turns: list[str], first: int, tokenizer: Any, starts: list[int] | None) -> Callable[[int], int]:
    """``tokens_from(i)``: how many tokens turns ``i..`` take, with the newlines between them.

    Read off the offsets of ``_measured_text(turns, first)`` when there are any (no extra
    tokenizer call), else from tokenizing each turn from ``first`` on once. Turns older
    than ``first`` are not measured and count as turn ``first`` (over budget when
    ``first > 0``). Estimates only: the caller re-checks.
    """
    newest = turns[first:]
    line_starts = list(accumulate((len(t) + 1 for t in newest[:-1]), initial=1 if first else 0))
    if starts and all(a <= b for a, b in pairwise(starts)):
        total = len(starts)
        return lambda i: total - bisect_left(starts, line_starts[max(i - first, 0)])
    counts = [len(ids) for ids in _encode(tokenizer, newest)["input_ids"]]
    sep = _count(tokenizer, "\n")
    suffix = list(accumulate(reversed(counts)))[::-1]  # suffix[i] = sum(counts[i:])
    return lambda i: suffix[max(i - first, 0)] + sep * (len(turns) - 1 - max(i, first))


def _cut(turns: list[str], tokenizer: Any, max_tokens: int, tokens_from: Callable[[int], int]) -> str:
    """Truncate a dialogue known not to fit whole (``tokens_from``: see :func:`_token_index`)."""
    n = len(turns)
    if n > 1:

        def candidate(k: int) -> str:  # the marker and the newest k turns
            return _marker(n - k) + "\n" + "\n".join(turns[n - k :])

        # Estimate: the most newest turns that fit beside the marker (the oldest always goes).
        head = _count(tokenizer, _marker(n - 1) + "\n")
        k = 1
        while k + 1 < n and head + tokens_from(n - k - 1) <= max_tokens:
            k += 1
        # Check exactly; while over, drop the oldest kept turns worth the overflow.
        actual = _count(tokenizer, candidate(k))
        while actual > max_tokens and k > 1:
            target = tokens_from(n - k) - (actual - max_tokens)
            while k > 1 and tokens_from(n - k) > target:
                k -= 1
            actual = _count(tokenizer, candidate(k))
        if actual <= max_tokens:
            # The estimate may be pessimistic (tokens merge across joins): grow while it fits.
            while k + 1 < n and actual + tokens_from(n - k - 1) - tokens_from(n - k) <= max_tokens:
                grown = _count(tokenizer, candidate(k + 1))
                if grown > max_tokens:
                    break
                k, actual = k + 1, grown
            return candidate(k)
    return _tail(turns[-1], n - 1, tokenizer, max_tokens)


def _tail(newest: str, omitted: int, tokenizer: Any, max_tokens: int) -> str:
    """The last tokens of the newest turn, behind a marker when the budget allows."""
    [(_, starts)] = _measure(tokenizer, [newest])
    if starts:  # cut the original text at a token start: exact characters, no decode artefacts
        n_tokens = len(starts)

        def tail_text(t: int) -> str:
            return newest[starts[-t] :]

    else:
        ids = list(_encode(tokenizer, newest)["input_ids"])
        n_tokens = len(ids)

        def tail_text(t: int) -> str:
            return tokenizer.decode(ids[-t:])

    def bodies(t: int) -> list[str]:
        text = tail_text(t).rstrip()
        # Stripped reads best; the raw tail (e.g. " yes") is what was counted, so try it too.
        return [body for body in dict.fromkeys((text.strip(), text)) if body.strip()]

    marker = _marker(omitted, newest_cut=True) + "\n"
    for prefix in (marker, ""):
        room = max_tokens - _count(tokenizer, prefix)
        if room < 1:
            continue
        t = min(room, n_tokens)
        while t > 0:
            overs = []
            for body in bodies(t):
                over = _count(tokenizer, prefix + body) - max_tokens
                if over <= 0:
                    return prefix + body
                overs.append(over)
            step = min(overs, default=1)
            t = t - step if t - step >= 1 or t == 1 else 1  # try a 1-token tail before giving up
    return ""


def fit_dialogues(dialogues: Sequence[str], tokenizer: Any, max_tokens: int | None) -> list[str]:
    """Normalised dialogues, truncated to ``max_tokens`` where needed (as truncate_dialogue does).

    A dialogue this process already cut with the same tokenizer and budget is not measured
    again (:data:`_CUTS`): training, validation and scoring of one table cut each dialogue once.
    """
    if max_tokens is None:
        return ["\n".join(split_turns(d)) for d in dialogues]
    if max_tokens == 0:
        return [""] * len(dialogues)
    joined = ["\n".join(_cap_turns(split_turns(d), max_tokens)) for d in dialogues]
    out = list(joined)
    chars = _CHARS_PER_TOKEN * (max_tokens + 1)
    memo = _CUTS.get(_fingerprint(tokenizer), max_tokens)
    for i, text in enumerate(joined):
        if text in memo:
            out[i] = memo[text]
    for begin in range(0, len(joined), _BATCH):
        todo = [i for i in range(begin, min(begin + _BATCH, len(joined))) if joined[i] and joined[i] not in memo]
        if not todo:
            continue
        turns = [joined[i].split("\n") for i in todo]
        firsts = [_first_measured(t, chars) for t in turns]
        measured = _measure(tokenizer, [_measured_text(t, first) for t, first in zip(turns, firsts, strict=True)])
        for i, t, first, (count, starts) in zip(todo, turns, firsts, measured, strict=True):
            shown = _settle(t, tokenizer, max_tokens, first, count, starts)
            out[i] = shown if shown is not None else _fit(t, tokenizer, max_tokens, chars * 4)
            memo[joined[i]] = out[i]
    _CUTS.trim()
    return out


def _fingerprint(tokenizer: Any) -> str | None:
    """A digest of a fast tokenizer's whole definition (vocabulary, merges, normaliser); None otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    cached = getattr(tokenizer, "_leadrank_fingerprint", None)
    if cached is None:
        cached = hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()
        tokenizer._leadrank_fingerprint = cached
    return cached


class _CutMemo:
    """Dialogue -> the text kept of it, per (tokenizer fingerprint, budget); at most ``limit`` dialogues in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tables: dict[tuple[str, int], dict[str, str]] = {}

    def get(self, fingerprint: str | None, max_tokens: int) -> dict[str, str]:
        if fingerprint is None:
            return {}  # a slow tokenizer without a definition to fingerprint: never memoised
        return self._tables.setdefault((fingerprint, max_tokens), {})

    def trim(self) -> None:
        """Forget everything once over the limit (cheap, and memory stays bounded)."""
        if sum(len(t) for t in self._tables.values()) > self.limit:
            self._tables.clear()


_CUTS = _CutMemo(limit=250_000)
