"""Batch scoring: length-sorted batches, inference mode, bf16 where the hardware has it.

Per lead: ``probability`` (the pointwise head's logit through the artifact's calibration)
and ``rank_score`` (the pairwise head, the pointwise logit, or a blend of both standardised
on the validation slice). For scoring, LoRA weights are merged into the backbone and the LM
head is never run.

Incremental scoring: with a :class:`ScoreCache`, a lead whose prompt text and model_version
are the same as in the cache is not run through the model again; its cached head outputs
are reused.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from peft import PeftModel

from leadrank.artifact import Artifact, blend_scores
from leadrank.config import ID_COLUMN, TIME_COLUMN
from leadrank.crm import CrmOutput, CrmSummary, hot_list_location
from leadrank.data.io import ChunkedWriter, iter_table, read_table, refuse_overwriting_inputs, write_table
from leadrank.data.schema import REASON_COLUMN, parse_as_of, split_valid, validate
from leadrank.hardware import resolve_dtype, set_threads
from leadrank.model.asllr import ASLLR
from leadrank.model.frozen import FeatureCache
from leadrank.model.reader import LeadInputs, LeadReader
from leadrank.settings import RankBy, ScoreConfig

SCORE_COLUMNS = [ID_COLUMN, "probability", "rank_score"]


@dataclass(frozen=True)
class FileSummary:
    rows_in: int
    rows_scored: int
    rows_rejected: int
    rejected_path: str | Path | None  # a file, or "file.duckdb::table" for a DuckDB output; None when no row was rejected
    crm: CrmSummary | None = None


RawScores = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # rows -> (point logits, pair scores)


class ScoreCache:
    """Head outputs of earlier runs, one row per lead: a Parquet file or a DuckDB table.

    Columns: ``lead_id``, ``prompt_hash`` (SHA-256 of what the model reads: the built prompt
    text and the side input, :meth:`LeadInputs.keys`), ``model_version``, ``point`` (pointwise logit)
    and ``pair`` (pairwise score). A lead is reused when both its prompt hash and the
    model_version match; otherwise it is rescored and its row replaced. Rows of leads that a
    run does not see are kept. Nothing is written until :meth:`save` (atomic).

    Example:
        >>> cache = ScoreCache.open("scores_cache.parquet")  # doctest: +SKIP
        >>> scores = scorer.score(leads, cache=cache); cache.save()  # doctest: +SKIP
        >>> cache.rescored, cache.reused  # doctest: +SKIP
        (12, 4988)
    """

    COLUMNS = (ID_COLUMN, "prompt_hash", "model_version", "point", "pair")

    def __init__(self, location: str | Path, rows: pd.DataFrame) -> None:
        self.location = str(location)
        self._known = rows.set_index(ID_COLUMN)
        self._updates: list[pd.DataFrame] = []
        self.rescored = 0
        self.reused = 0

    @classmethod
    def open(cls, location: str | Path) -> ScoreCache:
        """Read the cache at ``location`` (``file.parquet`` or ``file.duckdb::table``); empty when it does not exist yet."""
        rows = _read_or_empty(location, cls.COLUMNS)
        missing = [c for c in cls.COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(
                f"{location}: not a score cache (no column(s) {missing}); point --cache elsewhere or delete it to start afresh."
            )
        rows = rows[list(cls.COLUMNS)].astype({ID_COLUMN: str})
        if rows[ID_COLUMN].duplicated().any():
            raise ValueError(f"{location}: a score cache holds one row per lead, but some lead_id repeat; delete it to start afresh.")
        return cls(location, rows)

    def scores(self, lead_ids: Sequence[str], keys: list[str], model_version: str, run: RawScores) -> tuple[np.ndarray, np.ndarray]:
        """(pointwise logits, pairwise scores) per lead: cached where ``keys`` are unchanged, from ``run(rows)`` for the rest."""
        ids = pd.Index([str(i) for i in lead_ids])
        hashes = np.array(keys, dtype=object)
        known = self._known.reindex(ids)
        hit = (known["prompt_hash"].to_numpy() == hashes) & (known["model_version"].to_numpy() == model_version)
        point, pair = np.array(known["point"], dtype=float), np.array(known["pair"], dtype=float)
        todo = np.flatnonzero(~hit)
        if len(todo):
            point[todo], pair[todo] = run(todo)
        self.rescored += len(todo)
        self.reused += int(hit.sum())
        self._updates.append(
            pd.DataFrame({ID_COLUMN: ids, "prompt_hash": hashes, "model_version": model_version, "point": point, "pair": pair})
        )
        return point, pair

    def save(self) -> None:
        """Write the cache back, atomically: the rows of this run replace those of the same leads."""
        rows = pd.concat([self._known.reset_index(), *self._updates], ignore_index=True)
        write_table(rows.drop_duplicates(ID_COLUMN, keep="last")[list(self.COLUMNS)], self.location)


def _read_or_empty(location: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """The table at ``location``, or an empty one with ``columns`` when the file (or DuckDB table) is not there yet."""
    try:
        return read_table(location)
    except FileNotFoundError:
        pass
    except ValueError as exc:
        if ": no table " not in str(exc):  # leadrank.data.io's message for a DuckDB file without that table
            raise
    return pd.DataFrame({c: pd.Series([], dtype=float if c in ("point", "pair") else str) for c in columns})


class Scorer:
    """Score lead tables with a trained artifact.

    The scorer reads with its own copy of the model prepared for speed (LoRA merged into the
    backbone weights, the backbone cast to the scoring dtype) where that differs from the
    artifact's; the artifact itself is left as it was, so it can still be saved or trained.
    """

    def __init__(
        self, artifact: Artifact, config: ScoreConfig = ScoreConfig(), *, reading_cache: bool = False, prepare_in_place: bool = False
    ) -> None:
        """``reading_cache=True`` (frozen models only) keeps each lead's reading in the on-disk
        feature cache that training fills, so the benchmark reads a lead once.
        ``prepare_in_place=True`` merges and casts the artifact's own model instead of a copy,
        for an artifact nothing else uses (:meth:`load`): it saves a copy of the weights."""
        if reading_cache and artifact.model_config.mode != "frozen":
            raise ValueError("reading_cache=True needs a frozen model: a LoRA model's reading is its own, not the backbone's.")
        set_threads(config.threads)
        self.artifact = artifact
        self.config = config
        self.rank_by: RankBy = config.rank_by or artifact.rank_by
        self.dtype = resolve_dtype(config.dtype)
        self.model = _for_scoring(artifact.model, self.dtype, in_place=prepare_in_place)
        self.reader = LeadReader(
            self.model,
            artifact.tokenizer,
            artifact.features,
            side_encoder=artifact.side_encoder,
            cache=FeatureCache.for_model(self.model, artifact.backbone_checksum, self.dtype) if reading_cache else None,
            batch_size=config.batch_size,
            max_batch_tokens=config.max_batch_tokens,
            dtype=self.dtype,
        )

    @classmethod
    def load(cls, directory: str | Path, config: ScoreConfig = ScoreConfig()) -> Scorer:
        """A scorer of the model folder at ``directory`` (verified file by file), its model prepared in place."""
        from leadrank.artifact import load

        return cls(load(directory), config, prepare_in_place=True)

    def score(self, table: pd.DataFrame, *, cache: ScoreCache | None = None) -> pd.DataFrame:
        """Validate (no labels needed) and score; one row per lead, in input order.

        With ``cache``, leads whose prompt and model_version are unchanged reuse their cached
        head outputs (the caller saves the cache).
        """
        validate(table, self.artifact.features, self.artifact.funnel, require_labels=False)
        if cache is None:
            point, pair = self.raw_scores(table)
        else:
            inputs = self.reader.inputs(table)
            point, pair = cache.scores(
                table[ID_COLUMN].tolist(), inputs.keys(), self.artifact.model_version, lambda rows: self.reader.head_outputs(inputs, rows)
            )
        return self.to_scores(table[ID_COLUMN], point, pair)

    @property
    def reference(self) -> list[float]:
        """The model's quantiles of validation scores of the ranking in use: what CRM percentiles are read against."""
        return self.artifact.score_reference[self.rank_by]

    def to_scores(self, lead_ids: Sequence[str] | pd.Series, point: np.ndarray, pair: np.ndarray) -> pd.DataFrame:
        """The score table (:data:`SCORE_COLUMNS`) from raw head outputs: calibrated probability and rank score."""
        return pd.DataFrame(
            {
                ID_COLUMN: np.asarray(lead_ids),
                "probability": self.artifact.calibration.apply(point),
                "rank_score": self._rank_score(point, pair),
            }
        )

    def raw_scores(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(pointwise logits, pairwise scores) per row of an already validated table."""
        return self.reader.head_outputs(self.reader.inputs(table))

    def inputs(self, table: pd.DataFrame) -> LeadInputs:
        """The prompts and side inputs of an already validated table."""
        return self.reader.inputs(table)

    def score_file(
        self,
        source: str,
        destination: str | Path,
        *,
        chunk_rows: int = 5_000,
        cache: ScoreCache | None = None,
        crm: CrmOutput | None = None,
        encoding: str = "utf-8",
    ) -> FileSummary:
        """Score a large table chunk by chunk; every input row is either scored or written to the rejected file.

        Without ``crm`` the scores stream to ``destination`` chunk by chunk and memory stays
        flat (but for the set of lead_ids seen: a lead_id that an earlier chunk already scored
        is rejected as a duplicate, as within a chunk). With ``crm``, the hot list and the
        grade counts need the whole batch: the scores of every chunk (a lead_id and two floats
        per lead) are kept and the output is written once, with percentile and grade from the
        model's score reference (the same for a lead in any batch), not a second model pass. ``cache`` works as in
        :meth:`score`; the caller saves it. ``encoding`` is the text encoding of a CSV or JSONL
        source. An output (scores, rejected rows, hot list) that is the source is refused first.
        """
        rejected_path = _rejected_location(destination)
        hot_list = [hot_list_location(destination, crm.top)] if crm is not None and crm.top else []
        refuse_overwriting_inputs([destination, rejected_path, *hot_list], [source])
        in_duckdb = "::" in str(destination)  # a DuckDB table is written once, at the end
        destination = destination if in_duckdb else Path(destination)
        rows_in = rows_scored = rows_rejected = 0
        kept: list[pd.DataFrame] = []
        rejected_kept: list[pd.DataFrame] = []
        seen: set = set()
        with contextlib.ExitStack() as stack:
            scored_out = None if crm else stack.enter_context(ChunkedWriter(destination))
            write = kept.append if scored_out is None else scored_out.write
            rejected_out = None
            first_time = None  # an as_of of an earlier chunk: naive and offset times may not mix across chunks either
            for chunk in iter_table(source, chunk_rows, encoding=encoding):
                valid, rejected = split_valid(chunk, self.artifact.features, self.artifact.funnel, require_labels=False)
                first_time = _check_times_agree(first_time, chunk)
                valid, repeated = _split_seen(valid, seen, rows_in)
                seen.update(chunk[ID_COLUMN].dropna())  # a rejected row's id counts as seen too, as within a chunk
                rejected = pd.concat([rejected, repeated]).sort_index() if len(repeated) else rejected
                rows_in += len(chunk)
                if len(valid):
                    write(self.score(valid, cache=cache))
                    rows_scored += len(valid)
                if len(rejected):
                    if in_duckdb:
                        rejected_kept.append(rejected.astype(str))
                    else:
                        rejected_out = rejected_out or stack.enter_context(ChunkedWriter(rejected_path))
                        rejected_out.write(rejected.astype(str))  # as text: the rejected values may not fit their column type
                    rows_rejected += len(rejected)
            if not rows_scored:  # the file still gets its header
                write(pd.DataFrame({c: pd.Series([], dtype=str if c == ID_COLUMN else float) for c in SCORE_COLUMNS}))
        if rejected_kept:
            write_table(pd.concat(rejected_kept, ignore_index=True), rejected_path)
        summary = crm.write(pd.concat(kept, ignore_index=True), destination, self.artifact.model_version, self.reference) if crm else None
        return FileSummary(rows_in, rows_scored, rows_rejected, rejected_path if rows_rejected else None, summary)

    def _rank_score(self, point: np.ndarray, pair: np.ndarray) -> np.ndarray:
        if self.rank_by == "point":
            return point
        if self.rank_by == "pair":
            return pair
        return blend_scores(point, pair, self.artifact.score_stats)


def _check_times_agree(earlier: pd.Series | None, chunk: pd.DataFrame) -> pd.Series | None:
    """Raise as :func:`validate` does when ``chunk``'s as_of values and an earlier chunk's mix naive and
    offset times; return the as_of value later chunks are compared with."""
    if TIME_COLUMN not in chunk.columns:
        return earlier
    if earlier is not None:
        parse_as_of(pd.concat([earlier, chunk[TIME_COLUMN]], ignore_index=True).rename(TIME_COLUMN))
        return earlier
    readable = parse_as_of(chunk[TIME_COLUMN]).notna().to_numpy()  # a value that is not a time says nothing of its kind
    return chunk[TIME_COLUMN][readable].head(1) if readable.any() else None


def _split_seen(valid: pd.DataFrame, seen: set, first_row: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with a new lead_id, rows whose lead_id an earlier chunk had, valid or not, with a ``_reason``)."""
    again = valid[ID_COLUMN].isin(seen).to_numpy()
    repeated = valid[again].copy()
    repeated[REASON_COLUMN] = [f"duplicate lead_id {value!r}, first seen before row {first_row}" for value in repeated[ID_COLUMN]]
    return valid[~again], repeated


def _rejected_location(destination: str | Path) -> str | Path:
    """Where rejected rows go: ``OUT.rejected.ext`` beside a file, ``db::TABLE_rejected`` in DuckDB."""
    if "::" in str(destination):
        database, table = str(destination).rsplit("::", 1)
        return f"{database}::{table}_rejected"
    destination = Path(destination)
    return destination.with_name(f"{destination.stem}.rejected{destination.suffix}")


def _for_scoring(model: ASLLR, dtype: torch.dtype, *, in_place: bool) -> ASLLR:
    """The model to score with: LoRA merged into the weights, the backbone in ``dtype``, the heads in fp32.

    Unless ``in_place``, a copy where that changes any weight, so the caller's model stays as trained.
    """
    lora = isinstance(model.lm, PeftModel)
    recast = any(p.dtype != dtype for p in model.lm.parameters()) or any(p.dtype != torch.float32 for p in model.heads.parameters())
    if (lora or recast) and not in_place:
        model = copy.deepcopy(model)
    if isinstance(model.lm, PeftModel):
        model.lm = model.lm.merge_and_unload()  # type: ignore[operator]
    model.lm.to(dtype)
    model.heads.float()
    return model.eval()
