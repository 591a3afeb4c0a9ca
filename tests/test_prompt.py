"""Tests for leadrank.data.prompt: value formatting, the prompt layout, dialogue truncation.

Tokenizers are built in-process with the ``tokenizers`` library (no model download):
``word_tok`` is word-level (one token per whitespace-separated word, so counts are exact
and additive); ``bpe_tok`` is a byte-level BPE trained on a few sentences (counts are not
additive across joins, which is the hard case for the token budget).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from leadrank.config import Feature, FeatureSpec
from leadrank.data.prompt import (
    MissingColumnError,
    PromptTemplate,
    build_prompt,
    build_prompts,
    format_value,
    render_tabular,
    split_turns,
    truncate_dialogue,
    truncation,
)
from leadrank.data.prompt.truncation import _cut, _measure, _token_index
from leadrank.errors import ConfigurationError, DataContractError
from leadrank.model.backbone import load_tokenizer

WORDS = [
    "hi", "yes", "no", "ok", "test", "drive", "Saturday", "charging", "home", "price", "order",
    "the", "a", "model", "L6", "lease", "budget", "300k", "充电桩", "家里", "café", "déjà-vu",
    "!", "?", "3.5%", "discount", "wife", "kids", "parking", "later", "call", "me", "tomorrow",
]  # fmt: skip
SPEAKERS = ["Specialist:", "Customer:", "[Note day 3]", "[Call 2 min]"]
SENTENCES = [
    "Specialist: Hi, this is Lin from the Hefei store.",
    "Customer: hi, yes I filled in the form",
    "[Note day 3] Customer asked about home charging.",
    "Specialist: Would Saturday suit you for a test drive?",
    "Customer: 家里有充电桩 maybe later, call me tomorrow",
    " ".join(WORDS),
]


def _fast(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


@pytest.fixture(scope="session")
def word_tok() -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0}
    for word in " ".join(SENTENCES + SPEAKERS).split():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _fast(tok)


@pytest.fixture(scope="session")
def bpe_tok() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(SENTENCES * 3, trainer)
    return _fast(tok)


class SlowTokenizer:
    """A tokenizer without offsets (like transformers' Python tokenizers): tails are decoded."""

    is_fast = False

    def __init__(self, inner: PreTrainedTokenizerFast):
        self.inner = inner

    def __call__(self, text, **kwargs):
        assert not kwargs.get("return_offsets_mapping"), "slow tokenizers have no offsets"
        return self.inner(text, **kwargs)

    def decode(self, ids):
        return self.inner.decode(ids)


@pytest.fixture(scope="session")
def tiny_tok() -> PreTrainedTokenizerFast:
    return load_tokenizer("tiny")


class CountingTokenizer:
    """Passes calls to ``inner`` and records how many characters it was asked to tokenize."""

    is_fast = True

    def __init__(self, inner: PreTrainedTokenizerFast):
        self.inner = inner
        self.calls: list[str | list[str]] = []

    @property
    def chars(self) -> int:
        return sum(len(t) for texts in self.calls for t in ([texts] if isinstance(texts, str) else texts))

    def __call__(self, text, **kwargs):
        self.calls.append(text)
        return self.inner(text, **kwargs)

    def decode(self, ids):
        return self.inner.decode(ids)


@pytest.fixture(scope="session")
def slow_word_tok(word_tok) -> SlowTokenizer:
    return SlowTokenizer(word_tok)


@pytest.fixture(scope="session")
def slow_bpe_tok(bpe_tok) -> SlowTokenizer:
    return SlowTokenizer(bpe_tok)


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def marker(omitted: int) -> str:
    return f"[... {omitted} earlier {'turn' if omitted == 1 else 'turns'} omitted]"


def numeric(unit: str | None = None) -> Feature:
    return Feature(name="x", kind="numeric", unit=unit)


SMALL_SPEC = FeatureSpec(
    features=[
        Feature(name="lead_age_days", kind="numeric", description="days since the lead was created", unit="days"),
        Feature(name="source", kind="categorical", description="lead source"),
        Feature(name="has_private_parking", kind="bool"),
    ]
)
SMALL_ROW = {
    "lead_age_days": 12.0,
    "source": "web form",
    "has_private_parking": True,
    "dialogue": "Specialist: Hi, this is Lin.\nCustomer: hi",
    "label": 1,
}


class TestPromptTemplate:
    def test_defaults(self):
        template = PromptTemplate()
        assert "lock in an order" in template.instruction
        assert template.question == "Will this customer lock in an order? Answer Yes or No."
        assert (template.answer_yes, template.answer_no) == ("Yes", "No")
        assert template.completion(1) == " Yes"
        assert template.completion(False) == " No"

    def test_frozen(self):
        with pytest.raises(ValidationError):
            PromptTemplate().question = "other"

    def test_answers_must_differ(self):
        with pytest.raises(ValidationError, match="must differ"):
            PromptTemplate(answer_yes="Yes", answer_no="Yes")

    def test_answers_are_one_word(self):
        with pytest.raises(ValidationError, match="single word"):
            PromptTemplate(answer_yes="Yes please")

    def test_blank_question_rejected(self):
        with pytest.raises(ValidationError, match="blank"):
            PromptTemplate(question="   ")


class TestFormatValue:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (3.0, "3"),
            (3, "3"),
            (0.12345, "0.123"),
            (12345.678, "12346"),
            (123.456, "123.5"),
            (12.3456, "12.35"),
            (1.23456, "1.235"),
            (2.5, "2.5"),
            (-0.5, "-0.5"),
            (0.1, "0.1"),
            (999.96, "1000"),
            (0.0004567, "0.000457"),
            (-0.0, "0"),
            (1e20, "100000000000000000000"),
            (np.int64(7), "7"),
            (np.float32(1.5), "1.5"),
            ("12", "12"),
            (" 4.50 ", "4.5"),
            (math.inf, "infinity"),
        ],
    )
    def test_numbers(self, value, expected):
        assert format_value(value, numeric()) == expected

    def test_never_scientific(self):
        for value in [1e-7, 1.5e12, 123456789.123, 7e-4]:
            assert "e" not in format_value(value, numeric()).lower()

    def test_unit_appended(self):
        assert format_value(12, numeric("days")) == "12 days"
        assert format_value(1.25, numeric("km")) == "1.25 km"

    @pytest.mark.parametrize("value", [None, float("nan"), np.nan, pd.NA, pd.NaT, "", "   "])
    @pytest.mark.parametrize("kind", ["numeric", "categorical", "bool"])
    def test_missing_is_unknown_without_unit(self, value, kind):
        assert format_value(value, Feature(name="x", kind=kind, unit="days")) == "unknown"

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, "yes"),
            (False, "no"),
            (np.bool_(True), "yes"),
            (1, "yes"),
            (0.0, "no"),
            ("Yes", "yes"),
            ("false", "no"),
        ],
    )
    def test_bools(self, value, expected):
        assert format_value(value, Feature(name="b", kind="bool")) == expected

    def test_bad_bool(self):
        with pytest.raises(ValueError, match=r"'has_parking' is bool but got 'maybe'"):
            format_value("maybe", Feature(name="has_parking", kind="bool"))

    def test_bad_number(self):
        with pytest.raises(ValueError, match=r"'age' is numeric but got 'old'.*categorical"):
            format_value("old", Feature(name="age", kind="numeric"))

    def test_categorical(self):
        feature = Feature(name="c", kind="categorical")
        assert format_value("web \n form ", feature) == "web form"
        assert format_value(2.0, feature) == "2"
        assert format_value(True, feature) == "yes"


class TestRenderTabular:
    def test_spec_order_labels_and_units(self):
        spec = FeatureSpec.nev_default()
        row = {f.name: (True if f.kind == "bool" else 2.0 if f.kind == "numeric" else "b") for f in spec.features}
        lines = render_tabular(row, spec).split("\n")
        assert len(lines) == len(spec.features)
        for line, feature in zip(lines, spec.features, strict=True):
            value = {"bool": "yes", "numeric": "2", "categorical": "b"}[feature.kind]
            unit = f" {feature.unit}" if feature.unit else ""
            assert line == f"- {feature.description}: {value}{unit}"
        assert lines[1] == "- days since the lead was created: 2 days"

    def test_label_falls_back_to_column_name(self):
        spec = FeatureSpec(features=[Feature(name="app_visits_7d", kind="numeric")])
        assert render_tabular({"app_visits_7d": 4}, spec) == "- app visits 7d: 4"

    def test_missing_column_names_it_and_the_fix(self):
        row = dict(SMALL_ROW)
        del row["source"]
        with pytest.raises(MissingColumnError, match=r"no column 'source'.*add the column") as info:
            render_tabular(row, SMALL_SPEC)
        assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
        assert "has no column 'source'" in str(info.value)  # not KeyError's quoted repr

    def test_accepts_a_series(self):
        assert render_tabular(pd.Series(SMALL_ROW), SMALL_SPEC) == render_tabular(SMALL_ROW, SMALL_SPEC)


class TestBuildPrompt:
    def test_exact_layout(self):
        expected = (
            "You are a sales analyst. Read the lead's CRM record and conversation, "
            "then answer whether the customer will lock in an order.\n"
            "\n"
            "Lead record:\n"
            "- days since the lead was created: 12 days\n"
            "- lead source: web form\n"
            "- has private parking: yes\n"
            "\n"
            "Conversation (oldest first):\n"
            "Specialist: Hi, this is Lin.\n"
            "Customer: hi\n"
            "\n"
            "Will this customer lock in an order? Answer Yes or No.\n"
            "Answer:"
        )
        assert build_prompt(SMALL_ROW, SMALL_SPEC) == expected

    def test_supervision_columns_never_shown(self):
        row = dict(SMALL_ROW, funnel_stage="lock", _true_propensity=0.9)
        prompt = build_prompt(row, SMALL_SPEC)
        assert "lock\n" not in prompt and "0.9" not in prompt and "label" not in prompt

    def test_ends_with_answer_cue(self, bpe_tok):
        for budget in (None, 0, 5, 1000):
            prompt = build_prompt(SMALL_ROW, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=budget)
            assert prompt.endswith("\nAnswer:")

    def test_custom_template(self):
        template = PromptTemplate(instruction="Judge the lead.", question="Will they buy?", answer_yes="Y", answer_no="N")
        prompt = build_prompt(SMALL_ROW, SMALL_SPEC, template=template)
        assert prompt.startswith("Judge the lead.\n\nLead record:\n")
        assert prompt.endswith("\n\nWill they buy?\nAnswer:")

    @pytest.mark.parametrize("dialogue", ["", "  \n\n ", None, float("nan")])
    def test_empty_dialogue(self, dialogue):
        prompt = build_prompt(dict(SMALL_ROW, dialogue=dialogue), SMALL_SPEC)
        assert "\n\nConversation: none recorded.\n\n" in prompt
        assert "oldest first" not in prompt

    def test_no_features(self):
        prompt = build_prompt(SMALL_ROW, FeatureSpec(features=[]))
        assert "\n\nLead record: none.\n\nConversation (oldest first):\n" in prompt

    def test_no_dialogue_column(self):
        spec = SMALL_SPEC.model_copy(update={"dialogue_column": None})
        row = {k: v for k, v in SMALL_ROW.items() if k != "dialogue"}
        prompt = build_prompt(row, spec)
        assert "Conversation: none recorded." in prompt
        assert prompt.endswith("Answer:")

    def test_missing_dialogue_column(self):
        row = {k: v for k, v in SMALL_ROW.items() if k != "dialogue"}
        with pytest.raises(MissingColumnError, match="no column 'dialogue'.*dialogue column"):
            build_prompt(row, SMALL_SPEC)

    def test_non_text_dialogue(self):
        with pytest.raises(ValueError, match="must hold text"):
            build_prompt(dict(SMALL_ROW, dialogue=42), SMALL_SPEC)

    def test_zero_budget_says_omitted(self, word_tok):
        prompt = build_prompt(SMALL_ROW, SMALL_SPEC, tokenizer=word_tok, max_dialogue_tokens=0)
        assert "Conversation: omitted" in prompt and "Lin" not in prompt

    def test_budget_needs_tokenizer(self):
        with pytest.raises(ValueError, match="needs a tokenizer.*max_dialogue_tokens=None"):
            build_prompt(SMALL_ROW, SMALL_SPEC, max_dialogue_tokens=100)

    @pytest.mark.parametrize("budget", [-1, 2.5, True])
    def test_bad_budget(self, budget, word_tok):
        with pytest.raises(ValueError, match="whole number of tokens"):
            build_prompt(SMALL_ROW, SMALL_SPEC, tokenizer=word_tok, max_dialogue_tokens=budget)

    def test_truncates_dialogue(self, word_tok):
        dialogue = "\n".join(f"Customer: turn {i} yes" for i in range(10))  # 4 words each
        row = dict(SMALL_ROW, dialogue=dialogue)
        prompt = build_prompt(row, SMALL_SPEC, tokenizer=word_tok, max_dialogue_tokens=13)
        block = prompt.split("Conversation (oldest first):\n")[1].split("\n\n")[0]
        assert block == f"{marker(8)}\nCustomer: turn 8 yes\nCustomer: turn 9 yes"

    def test_deterministic(self, bpe_tok):
        row = dict(SMALL_ROW, dialogue="\n".join(SENTENCES * 4))
        prompts = {build_prompt(row, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=40) for _ in range(3)}
        assert len(prompts) == 1


class TestBuildPrompts:
    def _table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "lead_id": ["a", "b", "c", "d"],
                "lead_age_days": [1.0, np.nan, 30.5, 7],
                "source": ["web", "store", None, "app"],
                "has_private_parking": [True, False, pd.NA, True],
                "dialogue": ["\n".join(SENTENCES), "", None, "Customer: " + " ".join(WORDS * 3)],
            }
        )

    def test_same_as_build_prompt_per_row(self, bpe_tok):
        table = self._table()
        for budget in (None, 0, 7, 25, 10_000):
            tokenizer = bpe_tok if budget is not None else None
            got = build_prompts(table, SMALL_SPEC, tokenizer=tokenizer, max_dialogue_tokens=budget)
            want = [build_prompt(row, SMALL_SPEC, tokenizer=tokenizer, max_dialogue_tokens=budget) for row in table.to_dict("records")]
            assert got == want

    def test_row_order_and_missing_values(self):
        prompts = build_prompts(self._table(), SMALL_SPEC)
        assert len(prompts) == 4
        assert "- days since the lead was created: unknown\n" in prompts[1]
        assert "- lead source: unknown\n" in prompts[2] and "- has private parking: unknown\n" in prompts[2]
        assert "Conversation: none recorded." in prompts[1] and "Conversation: none recorded." in prompts[2]
        assert "- days since the lead was created: 30.5 days\n" in prompts[2]

    def test_missing_columns_listed(self):
        with pytest.raises(MissingColumnError, match=r"no column\(s\) \['source', 'dialogue'\]"):
            build_prompts(self._table().drop(columns=["source", "dialogue"]), SMALL_SPEC)

    def test_empty_table(self):
        assert build_prompts(self._table().iloc[:0], SMALL_SPEC) == []

    def test_dialogue_only_leaves_the_fields_out_and_a_lead_without_text_empty(self, bpe_tok):
        table = self._table()
        prompts = build_prompts(table, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=25, dialogue_only=True)
        whole = build_prompts(table, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=25)
        assert prompts[1] == "" and prompts[2] == ""  # empty and missing dialogue: nothing to read
        for short, full in ((prompts[0], whole[0]), (prompts[3], whole[3])):
            assert "Lead record:" not in short and "Lead record:" in full
            assert short == full.replace(full[full.index("Lead record:") : full.index("Conversation (oldest first):")], "")
        assert build_prompts(table, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=0, dialogue_only=True) == [""] * 4

    def test_a_dialogue_cut_once_is_not_measured_again(self, bpe_tok, monkeypatch):
        monkeypatch.setattr(truncation, "_CUTS", truncation._CutMemo(limit=1000))
        measured = []
        original = truncation._measure
        monkeypatch.setattr(truncation, "_measure", lambda tok, texts: measured.append(len(texts)) or original(tok, texts))
        table = self._table()
        first = build_prompts(table, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=7)
        calls = len(measured)
        assert calls > 0
        again = build_prompts(table, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=7)
        assert again == first and len(measured) == calls  # nothing measured the second time
        build_prompts(table, SMALL_SPEC, tokenizer=bpe_tok, max_dialogue_tokens=8)  # another budget: measured afresh
        assert len(measured) > calls

    def test_the_memo_forgets_past_its_limit(self):
        memo = truncation._CutMemo(limit=2)
        memo.get("tok", 5).update({"a": "a", "b": "b", "c": "c"})
        memo.trim()
        assert memo.get("tok", 5) == {} and memo.get(None, 5) == {}


class TestTruncateDialogue:
    def test_fits_whole(self, word_tok):
        dialogue = "Specialist: hi there\r\n\n  Customer: yes  \n"
        assert truncate_dialogue(dialogue, word_tok, 100) == "Specialist: hi there\nCustomer: yes"

    def test_cuts_oldest_first_at_line_boundaries(self, word_tok):
        turns = [f"Customer: turn {i} yes" for i in range(6)]  # 4 tokens each
        # marker (5 tokens) + 2 turns = 13 tokens; a third turn would need 17
        for budget in (13, 14, 15, 16):
            assert truncate_dialogue("\n".join(turns), word_tok, budget) == "\n".join([marker(4), *turns[-2:]])
        assert truncate_dialogue("\n".join(turns), word_tok, 17) == "\n".join([marker(3), *turns[-3:]])

    def test_singular_marker(self, word_tok):
        turns = ["Customer: a b c d e f g h", "Specialist: ok", "Customer: yes"]
        assert truncate_dialogue("\n".join(turns), word_tok, 9) == "\n".join([marker(1), *turns[1:]])

    def test_over_long_newest_turn_keeps_its_tail(self, word_tok):
        words = [f"w{i}" for i in range(40)]
        dialogue = "Specialist: hello\nCustomer: " + " ".join(words)
        out = truncate_dialogue(dialogue, word_tok, 20)
        head, body = out.split("\n")
        assert head == "[... 1 earlier turn and the start of the newest turn omitted]"
        assert body.endswith("w38 w39") and "w0 " not in body
        assert n_tokens(word_tok, out) <= 20
        assert body == " ".join(words[-(20 - n_tokens(word_tok, head)) :])

    def test_single_line_dialogue(self, word_tok):
        dialogue = "Customer: " + " ".join(f"w{i}" for i in range(50))
        out = truncate_dialogue(dialogue, word_tok, 12)
        assert out.startswith("[... start of the turn omitted]\n") and out.endswith("w48 w49")
        assert n_tokens(word_tok, out) <= 12

    def test_tiny_budget_drops_the_marker(self, word_tok):
        dialogue = "Specialist: hello\nCustomer: a b c d e f"
        assert truncate_dialogue(dialogue, word_tok, 3) == "d e f"

    def test_tail_keeps_original_text(self, bpe_tok):
        newest = "Customer: 家里有充电桩 café déjà-vu, call me tomorrow " * 3
        out = truncate_dialogue("Specialist: hi\n" + newest, bpe_tok, 15)
        body = out.split("\n")[-1]
        assert body and newest.strip().endswith(body)
        assert "\ufffd" not in out
        assert n_tokens(bpe_tok, out) <= 15

    def test_zero_and_empty(self, word_tok):
        assert truncate_dialogue("Customer: hi", word_tok, 0) == ""
        assert truncate_dialogue("", word_tok, 10) == ""
        assert truncate_dialogue(" \n \n", word_tok, 10) == ""

    def test_needs_tokenizer(self):
        with pytest.raises(ValueError, match="needs a tokenizer"):
            truncate_dialogue("Customer: hi", None, 10)

    def test_negative_budget(self, word_tok):
        with pytest.raises(ValueError, match=">= 0"):
            truncate_dialogue("Customer: hi", word_tok, -3)

    def test_few_tokenizer_calls(self, bpe_tok):
        counting = CountingTokenizer(bpe_tok)
        dialogue = "\n".join(f"Customer: turn {i} about home charging" for i in range(300))
        out = truncate_dialogue(dialogue, counting, 60)
        assert n_tokens(bpe_tok, out) <= 60 and out.endswith("turn 299 about home charging")
        # measured once, newest turns only (from a line break on); never turn by turn
        [measured] = counting.calls[0]
        assert measured.startswith("\nCustomer: turn ") and dialogue.endswith(measured)
        assert len(measured) < len(dialogue) / 10
        assert len(counting.calls) <= 4

    @pytest.mark.parametrize("entry", ["truncate_dialogue", "build_prompts"])
    def test_long_dialogue_tokenizes_only_its_end(self, tiny_tok, entry):
        rng = np.random.default_rng(0)
        turns, size = [], 0
        while size < 1_000_000:  # ~1 MB, ~15k turns
            turns.append(f"{rng.choice(SPEAKERS)} {' '.join(rng.choice(WORDS, size=rng.integers(1, 15)))}")
            size += len(turns[-1]) + 1
        dialogue = "\n".join(turns)
        counting = CountingTokenizer(tiny_tok)
        if entry == "truncate_dialogue":
            out = truncate_dialogue(dialogue, counting, 200)
        else:
            table = pd.DataFrame({"dialogue": [dialogue, "Customer: hi"]})
            spec = FeatureSpec(features=[], dialogue_column="dialogue")
            prompt = build_prompts(table, spec, tokenizer=counting, max_dialogue_tokens=200)[0]
            out = prompt.split("Conversation (oldest first):\n")[1].rsplit("\n\n", 1)[0]
        assert counting.chars < 20_000  # ~ budget x 8 characters measured + a few candidates
        assert out == reference_truncate(dialogue, tiny_tok, 200)
        assert out.startswith(f"{marker(len(turns) - len(out.split(chr(10))) + 1)}\n")

    def test_without_offsets(self, slow_word_tok):
        turns = [f"Customer: turn {i} yes" for i in range(6)]
        assert truncate_dialogue("\n".join(turns), slow_word_tok, 13) == "\n".join([marker(4), *turns[-2:]])
        out = truncate_dialogue("Specialist: hello\nCustomer: " + " ".join(WORDS * 2), slow_word_tok, 20)
        assert out.startswith("[... 1 earlier turn and the start") and out.endswith(" ".join(WORDS[-6:]))
        assert n_tokens(slow_word_tok, out) <= 20


@st.composite
def dialogues(draw) -> list[str]:
    n_turns = draw(st.integers(1, 10))
    return [
        f"{draw(st.sampled_from(SPEAKERS))} {' '.join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=14)))}"
        for _ in range(n_turns)
    ]


@pytest.mark.parametrize("tok_name", ["word_tok", "bpe_tok", "slow_bpe_tok"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=dialogues(), budget=st.integers(0, 80))
def test_property_budget_and_newest_turn(request, tok_name, turns, budget):
    tokenizer = request.getfixturevalue(tok_name)
    out = truncate_dialogue("\n".join(turns), tokenizer, budget)
    assert n_tokens(tokenizer, out) <= budget

    n, newest = len(turns), turns[-1]
    full = "\n".join(turns)
    if n_tokens(tokenizer, full) <= budget:
        assert out == full
        return
    newest_fits = n > 1 and n_tokens(tokenizer, f"{marker(n - 1)}\n{newest}") <= budget
    if newest_fits:
        lines = out.split("\n")
        assert lines[-1] == newest
        kept = len(lines) - 1
        assert 1 <= kept < n
        assert lines == [marker(n - kept), *turns[n - kept :]]  # oldest cut first, whole lines
    elif out and tokenizer.is_fast:  # (decoded byte-level tails may differ in broken characters)
        assert newest.endswith(out.split("\n")[-1])  # the newest words survive


# --------------------------------------------------------------------------- reference


def reference_truncate(dialogue: str, tokenizer, max_tokens: int) -> str:
    """truncate_dialogue as it was before it tokenized only the newest turns (the oracle).

    Tokenizes the whole dialogue and cuts it with the (unchanged) ``_cut``, counting tokens
    over every turn (``_token_index`` from turn 0 is the old whole-text count).
    """
    turns = split_turns(dialogue)
    if max_tokens == 0 or not turns:
        return ""
    full = "\n".join(turns)
    [(count, starts)] = _measure(tokenizer, [full])
    if count <= max_tokens:
        return full
    return _cut(turns, tokenizer, max_tokens, _token_index(turns, 0, tokenizer, starts))


@st.composite
def long_dialogues(draw) -> str:
    """Up to 60 turns, sometimes blank lines, padding and CRLFs (normalised by split_turns)."""
    turn = st.builds(" ".join, st.lists(st.sampled_from(WORDS + SPEAKERS), min_size=1, max_size=14))
    turns = draw(st.lists(turn, min_size=1, max_size=60))
    sep = draw(st.sampled_from(["\n", "\r\n", "\n\n", " \n  "]))
    return sep.join(turns)


@pytest.mark.parametrize("tok_name", ["tiny_tok", "bpe_tok", "word_tok", "slow_bpe_tok"])
@pytest.mark.parametrize("chars_per_token", [1, 8])  # 1: the first window is often too short
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dialogue=long_dialogues(), budget=st.integers(0, 120))
def test_property_same_as_tokenizing_everything(request, monkeypatch, tok_name, chars_per_token, dialogue, budget):
    monkeypatch.setattr(truncation, "_CHARS_PER_TOKEN", chars_per_token)
    tokenizer = request.getfixturevalue(tok_name)
    assert truncate_dialogue(dialogue, tokenizer, budget) == reference_truncate(dialogue, tokenizer, budget)


@pytest.mark.parametrize("tok_name", ["tiny_tok", "bpe_tok", "slow_word_tok"])
@pytest.mark.parametrize("chars_per_token", [1, 8])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dialogues=st.lists(long_dialogues(), min_size=1, max_size=5), budget=st.integers(1, 120))
def test_property_build_prompts_same_as_tokenizing_everything(request, monkeypatch, tok_name, chars_per_token, dialogues, budget):
    monkeypatch.setattr(truncation, "_CHARS_PER_TOKEN", chars_per_token)
    tokenizer = request.getfixturevalue(tok_name)
    spec = FeatureSpec(features=[], dialogue_column="dialogue")
    table = pd.DataFrame({"dialogue": dialogues})
    prompts = build_prompts(table, spec, tokenizer=tokenizer, max_dialogue_tokens=budget)
    for prompt, dialogue in zip(prompts, dialogues, strict=True):
        shown = reference_truncate(dialogue, tokenizer, budget)
        block = f"Conversation (oldest first):\n{shown}" if shown else "Conversation: omitted (token budget too small)."
        assert f"\n\n{block}\n\n" in prompt


# --------------------------------------------------------------------------- one huge turn

LONG_BUDGET = 50
LONG_BOUND = truncation._MAX_CHARS_PER_TOKEN * (LONG_BUDGET + 1)  # characters of a turn that truncation reads
HUGE_TURN = "Customer: " + " ".join(["call me tomorrow about the price"] * 32_000)  # about 1 MB in one line
DIALOGUE_ONLY = FeatureSpec(features=[], dialogue_column="dialogue")


def _sizes(counting: CountingTokenizer) -> list[int]:
    return [len(t) for texts in counting.calls for t in ([texts] if isinstance(texts, str) else texts)]


class TestOneHugeTurn:
    @pytest.mark.parametrize("tok_name", ["tiny_tok", "bpe_tok"])
    @pytest.mark.parametrize("entry", ["truncate_dialogue", "build_prompts"])
    def test_the_tokenizer_never_reads_more_than_the_bound(self, request, tok_name, entry):
        tokenizer = request.getfixturevalue(tok_name)
        counting = CountingTokenizer(tokenizer)
        if entry == "truncate_dialogue":
            out = truncate_dialogue(HUGE_TURN, counting, LONG_BUDGET)
        else:
            table = pd.DataFrame({"dialogue": [HUGE_TURN, "Customer: hi"]})
            prompt = build_prompts(table, DIALOGUE_ONLY, tokenizer=counting, max_dialogue_tokens=LONG_BUDGET)[0]
            out = prompt.split("Conversation (oldest first):\n")[1].rsplit("\n\n", 1)[0]
        assert max(_sizes(counting)) <= LONG_BOUND
        head, body = out.split("\n")
        assert head == "[... start of the turn omitted]" and HUGE_TURN.endswith(body)  # the newest words, as before
        assert n_tokens(tokenizer, out) <= LONG_BUDGET

    def test_a_huge_turn_among_others_is_read_up_to_the_bound(self, bpe_tok):
        counting = CountingTokenizer(bpe_tok)
        dialogue = "\n".join(["Specialist: hello", HUGE_TURN, "Customer: ok", HUGE_TURN])
        truncate_dialogue(dialogue, counting, LONG_BUDGET)
        assert max(_sizes(counting)) <= 2 * LONG_BOUND + len("\nCustomer: ok\n")  # the newest two turns, at most

    @pytest.mark.parametrize("tok_name", ["tiny_tok", "bpe_tok", "slow_bpe_tok"])
    @pytest.mark.parametrize(
        "turns", [["Specialist: Would Saturday suit you?", HUGE_TURN], [HUGE_TURN, "Customer: yes, morning please"], [HUGE_TURN]]
    )
    def test_the_prompt_is_that_of_the_turn_cut_to_the_bound(self, request, tok_name, turns):
        tokenizer = request.getfixturevalue(tok_name)
        precut = [turn[-LONG_BOUND:] if turn is HUGE_TURN else turn for turn in turns]
        whole, cut = ({"dialogue": "\n".join(t)} for t in (turns, precut))
        expected = build_prompt(cut, DIALOGUE_ONLY, tokenizer=tokenizer, max_dialogue_tokens=LONG_BUDGET)
        assert build_prompt(whole, DIALOGUE_ONLY, tokenizer=tokenizer, max_dialogue_tokens=LONG_BUDGET) == expected
        table = pd.DataFrame([whole, cut])
        assert build_prompts(table, DIALOGUE_ONLY, tokenizer=tokenizer, max_dialogue_tokens=LONG_BUDGET) == [expected] * 2

    def test_a_turn_cut_to_the_bound_still_shows_the_cut(self, word_tok):
        # word-level: an unknown word is one [UNK] token however long, so the cut end fits the budget
        out = truncate_dialogue("Customer: " + "x" * 100_000, word_tok, LONG_BUDGET)
        assert out.startswith("[... start of the turn omitted] xxx") and len(out) <= LONG_BOUND

    def test_no_budget_keeps_a_huge_turn_whole(self):
        prompt = build_prompt({"dialogue": HUGE_TURN}, DIALOGUE_ONLY)
        assert HUGE_TURN.strip() in prompt


class TestErrorKinds:
    def test_bad_values_break_the_data_contract(self):
        with pytest.raises(DataContractError, match="is numeric"):
            format_value("abc", numeric())
        with pytest.raises(DataContractError, match="must hold text"):
            build_prompt({"dialogue": 3}, DIALOGUE_ONLY)
        with pytest.raises(MissingColumnError) as missing:
            render_tabular({}, SMALL_SPEC)
        assert isinstance(missing.value, DataContractError) and isinstance(missing.value, KeyError)

    def test_a_bad_budget_is_a_configuration_error(self, word_tok):
        with pytest.raises(ConfigurationError, match="needs a tokenizer"):
            truncate_dialogue("Customer: hi", None, 10)
        with pytest.raises(ConfigurationError, match=">= 0"):
            build_prompt(SMALL_ROW, SMALL_SPEC, tokenizer=word_tok, max_dialogue_tokens=-1)
