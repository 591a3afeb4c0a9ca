"""Hostile inputs, end to end: generated bad tables and requests through the CLI, Scorer.score_file and the service.

Pins README "When the input is wrong or hostile" and the exit codes of the Quick start:

* no traceback ever reaches the user, and the exit code (0 done, 1 environment, 2 usage,
  3 data contract) is the one of the failure's kind;
* nothing is silently changed: a valid row's values come out as they went in (a CSV cell that
  spells a number comes out as that number), a bad numeric cell (``true``, ``"42"`` where
  types are kept, a word, a negative count, infinity) rejects its own row and is never coerced;
* nothing is lost: rows in = rows scored + rows rejected (``leadrank score``,
  ``Scorer.score_file``) = valid + rejected (``leadrank validate --drop-invalid``), and every
  lead id of the input is in one of the two outputs, unchanged;
* every CSV written (scores, rejected rows, the ``--top`` hot list) defuses formula-injection
  text with a leading ``'``.

Tables start from a small simulated CRM (``SynthConfig(n=60, seed=1)``) whose CSV cells are
mutated by hypothesis: booleans, numeric text, words, negative counts and infinities in numeric
columns; bad and empty booleans; missing columns; duplicate, empty, whitespace, formula
(``=HYPERLINK(..)``, ``+cmd``, ``@x``, ``-1+2``) and odd-unicode lead ids; mixed time zones and
broken times in ``as_of``; odd unicode (no surrogates: files cannot hold them) and ~200 kB
dialogue turns. The oracle knows the class of every value it plants, so it predicts which rows
are rejected and why. The bugs it found are pinned at the end as regression tests.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from helpers import invoke, plain, train_tiny_model, widen_consoles
from leadrank.artifact import load
from leadrank.config import ID_COLUMN, TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.io import read_table
from leadrank.data.schema import MISSING_WORDS, REASON_COLUMN, LeadDataError, bool_value, is_missing
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import EXIT_DATA, EXIT_OK, EXIT_USAGE, DataContractError
from leadrank.inference import Scorer
from leadrank.serve import ServeSettings, create_app
from leadrank.settings import ScoreConfig

pytestmark = pytest.mark.usefixtures("isolated_cache")

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
DIALOGUE = FEATURES.dialogue_column or "dialogue"
NUMERIC = [f.name for f in FEATURES.features if f.kind == "numeric"]
BOOLS = [f.name for f in FEATURES.features if f.kind == "bool"]
CATEGORICAL = [f.name for f in FEATURES.features if f.kind == "categorical"]
NUMBERS_OUTSIDE_SPEC = [FUNNEL.label_column, "call_duration_s", "_true_propensity"]
LABEL_COLUMNS = list(FUNNEL.supervision_columns)  # label, funnel_stage, call_duration_s
EXACT = ScoreConfig(dtype="fp32", threads=1)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: ~200 kB in one dialogue turn (the model cuts turns by characters before tokenizing).
LONG_TURN = "Customer: " + "I would like the long-range battery, please. " * 4_500
LONG = "<the ~200 kB turn>"  # what plans hold instead, so a failing example prints short


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)  # error messages with long tmp paths stay on one line


# --------------------------------------------------------------------------- the base table


def _csv_cells(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as the exact text of its CSV cells (every cell a str, as a CRM export holds it)."""
    table = table.assign(**{TIME_COLUMN: table[TIME_COLUMN].dt.strftime("%Y-%m-%dT%H:%M:%S")})
    text = table.to_csv(index=False, lineterminator="\r\n")
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


SIMULATED = simulate(SynthConfig(n=60, seed=1))
BASE = _csv_cells(SIMULATED)  # 60 rows of text cells, every one valid
SMALL = BASE.head(24).reset_index(drop=True)  # what the scoring tests score


def write_csv(cells: pd.DataFrame, path: Path) -> Path:
    """Write text cells as a CSV, quoted where needed (CRLF ends, so a lone CR in a cell is quoted too)."""
    cells.to_csv(path, index=False, lineterminator="\r\n")
    return path


def fresh_dir(root: Path) -> Path:
    """A new folder per hypothesis example (the function's tmp_path is shared by all of them)."""
    folder = root / uuid.uuid4().hex[:10]
    folder.mkdir()
    return folder


# --------------------------------------------------------------------------- what is planted, by class

# (text, class): "ok" a number, "gap" no value, "bad" rejects its row.
NUMERIC_CELLS = [
    ("42", "ok"), (" 7 ", "ok"), ("1e1", "ok"), ("3.0", "ok"), ("007", "ok"), ("-0", "ok"), (".5", "ok"),
    ("99999999999999999999999", "ok"),
    ("", "gap"), ("NA", "gap"), ("n/a", "gap"), ("null", "gap"),
    ("true", "bad"), ("False", "bad"), ("yes", "bad"), ("many", "bad"), ("12 years", "bad"), ("0x10", "bad"), ("1,5", "bad"),
    ("-1", "bad"), ("-0.5", "bad"), ("-100", "bad"),  # the shipped spec gives every count min: 0
    ("inf", "bad"), ("-inf", "bad"), ("Infinity", "bad"), ("1e999", "bad"),
]  # fmt: skip
BOOL_CELLS = [
    ("yes", "ok"), ("no", "ok"), ("TRUE", "ok"), ("false", "ok"), ("1", "ok"), ("0", "ok"), (" Yes ", "ok"),
    ("", "gap"), ("NA", "gap"),
    ("maybe", "bad"), ("2", "bad"), ("y", "bad"), ("-1", "bad"),
]  # fmt: skip
ODD_TEXT = [
    "😀", "e\u0301", "\u202eRTL", "z\u200dw", "ｆｕｌｌ", "x\u2028y", "x\x85y", "\ufeffbom", "a\x00b", "=cmd()", "-x", "+1", "@here",
    "NA", "cr\ronly", "two\nlines", 'quo"te', "a,b;c|d",
]  # fmt: skip
DIALOGUES = [*ODD_TEXT, "", "Customer: ok\r\nSpecialist: fine", 'Specialist: =HYPERLINK("x")\nCustomer: -1', LONG]
FORMULA_IDS = ['=HYPERLINK("http://evil.example","click")', "+cmd|' /C calc'!A0", "@x", "-1+2", "=1+1", "-5", "\tTAB", "\rCR"]
ODD_IDS = ["😀-lead", "e\u0301", "\u202eRTL", "z\u200dw", "ｆｕｌｌ", "x\u2028y", "007", "1e3", "a,b", 'quo"te', "line\nbreak"]
BLANK_IDS = ["   ", " \t "]  # rejected in files as in the service: "empty or only whitespace"
TIME_CELLS = [
    ("2024-03-01", "naive"), ("2024-03-01 09:30", "naive"),
    ("2024-03-01T09:30:00+08:00", "aware"), ("2024-03-01T01:30:00Z", "aware"),
    ("sometime last week", "bad"), ("2024-13-45", "bad"), ("", "bad"), ("NA", "bad"),
]  # fmt: skip
NUMERIC_CLASS, BOOL_CLASS, TIME_CLASS = dict(NUMERIC_CELLS), dict(BOOL_CELLS), dict(TIME_CELLS)
DROPPABLE = [ID_COLUMN, TIME_COLUMN, DIALOGUE, "customer_age", "has_private_parking", "source", "label", "_true_propensity"]


def plans(rows: int) -> st.SearchStrategy[list[tuple]]:
    """1 to 6 mutations of a table of ``rows`` rows; later ones may overwrite earlier ones.

    Weighted towards cells (bad numbers most of all) over whole-table breakage: a missing
    column or mixed time zones leave no row to check, so they come in about one example in five.
    """
    row = st.integers(0, rows - 1)

    def cell(columns: list[str], values: list[str]) -> st.SearchStrategy[tuple]:
        return st.tuples(st.just("cell"), row, st.sampled_from(columns), st.sampled_from(values))

    numbers = {kind: cell(NUMERIC, [text for text, k in NUMERIC_CELLS if k == kind]) for kind in ("ok", "gap", "bad")}
    weighted = [
        numbers["ok"], numbers["gap"], numbers["bad"], numbers["bad"], numbers["bad"],
        cell(BOOLS, [text for text, _ in BOOL_CELLS]),
        cell(CATEGORICAL, ODD_TEXT),
        cell([DIALOGUE], DIALOGUES),
        cell([ID_COLUMN], FORMULA_IDS), cell([ID_COLUMN], ODD_IDS + BLANK_IDS + [""]),
        cell([TIME_COLUMN], [text for text, kind in TIME_CELLS if kind != "aware"]),
        st.tuples(st.just("dup"), row, row),
        st.one_of(  # table problems: an as_of with an offset among naive ones, a missing column
            cell([TIME_COLUMN], [text for text, kind in TIME_CELLS if kind == "aware"]),
            st.tuples(st.just("drop"), st.sampled_from(DROPPABLE)),
        ),
    ]  # fmt: skip
    op = st.sampled_from(weighted).flatmap(lambda strategy: strategy)  # duplicates weigh (one_of does not weigh them)
    return st.lists(op, min_size=1, max_size=6)


#: Every class of hostile cell at once (rows < 24, so it fits the scoring tables too); run by each table test.
EVERY_CLASS = [
    ("cell", 1, "customer_age", "-1"), ("cell", 2, "app_visits_7d", "true"), ("cell", 3, "store_visits", "42"),
    ("cell", 4, "family_size", "many"), ("cell", 5, "followup_count", "Infinity"), ("cell", 6, "lead_age_days", " 7 "),
    ("cell", 7, ID_COLUMN, FORMULA_IDS[0]), ("cell", 8, ID_COLUMN, "-1+2"), ("cell", 9, ID_COLUMN, "+cmd|' /C calc'!A0"),
    ("cell", 10, ID_COLUMN, "@x"), ("cell", 11, ID_COLUMN, "   "), ("cell", 12, ID_COLUMN, ""), ("dup", 13, 14),
    ("cell", 15, DIALOGUE, LONG), ("cell", 16, "source", "😀"), ("cell", 17, "city_tier", "a\x00b"),
    ("cell", 18, "has_private_parking", "maybe"), ("cell", 19, "used_financing_calculator", "yes"),
    ("cell", 20, TIME_COLUMN, "sometime last week"), ("cell", 21, DIALOGUE, "NA"), ("cell", 22, "customer_age", "n/a"),
    ("cell", 7, "app_visits_30d", "-0"),
]  # fmt: skip
MIXED_ZONES = [("cell", 3, TIME_COLUMN, "2024-03-01T09:30:00+08:00"), ("cell", 4, TIME_COLUMN, "2024-03-01T01:30:00Z")]
NO_FEATURE = [("drop", "customer_age"), ("cell", 2, ID_COLUMN, "=1+1")]


def apply(plan: list[tuple], base: pd.DataFrame) -> pd.DataFrame:
    table = base.copy()
    for op in plan:
        if op[0] == "cell" and op[2] in table.columns:
            table.iat[op[1], table.columns.get_loc(op[2])] = LONG_TURN if op[3] == LONG else op[3]
        elif op[0] == "dup" and ID_COLUMN in table.columns and op[1] != op[2]:
            column = table.columns.get_loc(ID_COLUMN)
            table.iat[op[2], column] = table.iat[op[1], column]
        elif op[0] == "drop" and op[1] in table.columns:
            table = table.drop(columns=[op[1]])
    return table


@dataclass
class Expected:
    """What the contract says about a table of text cells."""

    table_problem: str | None  # the word the message must hold, when no row can be kept
    reasons: dict[int, set[str]] = field(default_factory=dict)  # row -> words its _reason holds

    @property
    def rejected(self) -> set[int]:
        return set(self.reasons)


def expect(cells: pd.DataFrame, *, labels: bool, timezone: str | None = None, chunk_rows: int | None = None) -> Expected:
    required = [ID_COLUMN, TIME_COLUMN, DIALOGUE, *FEATURES.names] + (LABEL_COLUMNS if labels else [])
    missing = [c for c in required if c not in cells.columns]
    if missing:
        return Expected(table_problem=missing[0])
    if timezone is None:
        kinds = {TIME_CLASS.get(text, "naive") for text in cells[TIME_COLUMN]}
        if {"naive", "aware"} <= kinds:
            return Expected(table_problem="--timezone")
    reasons: dict[int, set[str]] = {}
    for row in range(len(cells)):
        broken = {c for c in NUMERIC if NUMERIC_CLASS.get(cells.at[row, c]) == "bad"}
        broken |= {c for c in BOOLS if BOOL_CLASS.get(cells.at[row, c]) == "bad"}
        broken |= {TIME_COLUMN} if TIME_CLASS.get(cells.at[row, TIME_COLUMN]) == "bad" else set()
        broken |= {"lead_id is missing"} if cells.at[row, ID_COLUMN] in MISSING_WORDS else set()
        if broken:
            reasons[row] = broken
    first: dict[str, int] = {}
    for row, lead in enumerate(cells[ID_COLUMN]):
        if lead in MISSING_WORDS:
            continue
        if not lead.strip():  # a blank id is no id: rejected, and never a duplicate
            reasons.setdefault(row, set()).add("empty or only whitespace")
            continue
        if lead not in first:
            first[lead] = row
            continue
        origin = first[lead]
        if chunk_rows is not None and origin // chunk_rows != row // chunk_rows and row in reasons:
            continue  # across chunks only a row valid on its own is checked against earlier chunks' ids
        reasons.setdefault(row, set()).add("duplicate lead_id")
    return Expected(None, reasons)


# --------------------------------------------------------------------------- reading what was written


def unescape(value: object) -> object:
    """A written cell without the leading ``'`` that defused it."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def defused(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def raw_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    limit = csv.field_size_limit(1 << 24)  # a ~200 kB dialogue is one field; the default limit is 128 kB
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    finally:
        csv.field_size_limit(limit)
    return rows[0], rows[1:]


def assert_defused(path: Path, lead_ids: list[str | None] | None = None) -> None:
    """No cell of a written CSV starts like a formula; ``lead_ids`` (None: missing) come out with a leading ``'`` where needed."""
    header, rows = raw_csv(path)
    for row in rows:
        for name, cell in zip(header, row, strict=True):
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), f"{path.name}: {name} {cell[:40]!r} is not defused"
            assert not cell.startswith("-") or _is_number(cell), f"{path.name}: {name} {cell[:40]!r} is not defused"
    if lead_ids is not None:
        column = header.index(ID_COLUMN)
        assert len(rows) == len(lead_ids)
        for row, lead in zip(rows, lead_ids, strict=True):
            if lead is not None:
                assert row[column] == defused(lead), f"{path.name}: lead_id {lead!r} written as {row[column]!r}"


def meaning(column: str, value: object) -> object:
    """What one cell means under the contract, however it was spelled (planted text, or a value read back)."""
    value = unescape(value)
    if column == DIALOGUE:
        return value
    if is_missing(value) or (isinstance(value, str) and value in MISSING_WORDS):
        return None
    if column in BOOLS:
        try:
            return bool_value(value)
        except DataContractError:
            pass  # a rejected cell such as '2' or 'maybe': as a number or as text, below
    if column in NUMERIC or column in NUMBERS_OUTSIDE_SPEC or column in BOOLS:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass  # a rejected cell: the text as it was
    return value if isinstance(value, str) else str(value)


def same_id(written: object, planted: str) -> bool:
    return meaning(ID_COLUMN, written) == meaning(ID_COLUMN, planted)


def align(cells: pd.DataFrame, expected: Expected, valid_ids: list, rejected_ids: list) -> tuple[list[int], list[int]]:
    """Which input rows the valid and the rejected outputs hold (both keep the input order); checks the oracle."""
    valid_rows, rejected_rows = [], []
    for row, lead in enumerate(cells[ID_COLUMN]):
        keep = row not in expected.reasons
        out, rows = (valid_ids, valid_rows) if keep else (rejected_ids, rejected_rows)
        assert len(rows) < len(out), f"row {row} ({lead!r}) is in neither output ({'valid' if keep else 'rejected'} expected)"
        where = "valid" if keep else "rejected"
        assert same_id(out[len(rows)], lead), f"row {row}: expected {lead!r} among the {where}, got {out[len(rows)]!r}"
        rows.append(row)
    assert len(valid_rows) == len(valid_ids) and len(rejected_rows) == len(rejected_ids), "an output holds rows the input has not"
    return valid_rows, rejected_rows


def check_reasons(expected: Expected, rejected_rows: list[int], reasons: list[str]) -> None:
    for row, reason in zip(rejected_rows, reasons, strict=True):
        assert isinstance(reason, str) and reason, f"row {row} rejected without a reason"
        for word in expected.reasons.get(row, ()):
            assert word in reason, f"row {row}: {word!r} not in its reason {reason!r}"


def planted_ids(cells: pd.DataFrame, rows: list[int]) -> list[str | None]:
    """The lead ids planted in ``rows``; None where the cell means "no id" (written as a gap)."""
    return [None if cells.at[r, ID_COLUMN] in MISSING_WORDS else cells.at[r, ID_COLUMN] for r in rows]


def read_rows(path: Path) -> pd.DataFrame:
    """A written CSV as the text of its cells (what was written, not what a reader would infer from it)."""
    if not path.exists():
        return pd.DataFrame(columns=[ID_COLUMN, REASON_COLUMN], dtype=object)
    header, rows = raw_csv(path)
    return pd.DataFrame(rows, columns=header, dtype=object)


def assert_clean_exit(result, expected_code: int) -> str:
    """No traceback, no exception escaping the CLI, and the exit code of the failure's kind."""
    out = plain(result)
    assert "Traceback" not in out and 'File "' not in out, out[-2000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == expected_code, out[-2000:]
    return out


def counts(pattern: str, out: str) -> list[int]:
    found = re.search(pattern, out)
    assert found, out[-2000:]
    return [int(n.replace(",", "")) for n in found.groups()]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA model on the full NEV spec, trained once for the module."""
    return train_tiny_model(simulate(SynthConfig.preset("dense", n=120, seed=5)), tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer(load(model_dir), EXACT)


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    app = create_app(model_dir, ServeSettings(api_token=None, score=EXACT))
    with TestClient(app, raise_server_exceptions=False) as started:  # a 500 is an answer, not an exception here
        yield started


# --------------------------------------------------------------------------- leadrank validate --drop-invalid


@HOSTILE
@given(plan=plans(len(BASE)), timezone=st.sampled_from([None, None, "Asia/Shanghai"]))
@example(plan=EVERY_CLASS, timezone=None)
@example(plan=EVERY_CLASS + MIXED_ZONES, timezone=None)
@example(plan=EVERY_CLASS + MIXED_ZONES, timezone="Asia/Shanghai")
@example(plan=NO_FEATURE, timezone=None)
def test_validate_drop_invalid_keeps_every_row_and_changes_no_value(plan: list[tuple], timezone: str | None, tmp_path: Path) -> None:
    folder = fresh_dir(tmp_path)
    cells = apply(plan, BASE)
    source = write_csv(cells, folder / "crm.csv")
    before = source.read_bytes()
    out = folder / "clean.csv"
    expected = expect(cells, labels=True, timezone=timezone)
    result = invoke("validate", source, "--drop-invalid", "--out", out, *(["--timezone", timezone] if timezone else []))
    assert source.read_bytes() == before
    if expected.table_problem:
        text = assert_clean_exit(result, EXIT_DATA)
        assert expected.table_problem in text
        assert not out.exists() and not (folder / "clean.rejected.csv").exists()
        return
    text = assert_clean_exit(result, EXIT_OK)
    rows_in, n_valid, n_rejected = counts(r"([\d,]+) rows in: ([\d,]+) valid .*?([\d,]+) rejected", text)
    rejected_path = folder / "clean.rejected.csv"
    valid, rejected = read_rows(out), read_rows(rejected_path)
    assert rows_in == len(cells) == n_valid + n_rejected
    assert (len(valid), len(rejected)) == (n_valid, n_rejected)
    assert rejected_path.exists() or n_rejected == 0  # no file needed when nothing is rejected
    valid_rows, rejected_rows = align(cells, expected, valid[ID_COLUMN].tolist(), rejected[ID_COLUMN].tolist())
    check_reasons(expected, rejected_rows, rejected[REASON_COLUMN].tolist())
    assert_defused(out, [cells.at[r, ID_COLUMN] for r in valid_rows])
    if rejected_path.exists():
        assert_defused(rejected_path, planted_ids(cells, rejected_rows))
    # nothing silently changed: every value of the valid rows, and of the rejected ones, means what it meant
    outputs = [(valid, valid_rows)] + ([(rejected, rejected_rows)] if rejected_path.exists() else [])
    for frame, rows in outputs:
        assert [c for c in frame.columns if c != REASON_COLUMN] == list(cells.columns)
        for column in cells.columns:
            if column == TIME_COLUMN and timezone:
                continue
            planted = [meaning(column, cells.at[r, column]) for r in rows]
            written = [meaning(column, v) for v in frame[column]]
            assert written == planted, column
    header, raw = raw_csv(out)
    for column in NUMERIC:  # a valid row's number is written as a number, never as text
        position = header.index(column)
        assert all(row[position] == "" or _is_number(row[position]) for row in raw), column
    if timezone:  # written in UTC: the same instants, one kind of time
        instants = [pd.Timestamp(cells.at[r, TIME_COLUMN]) for r in valid_rows]
        instants = [t.tz_localize(timezone) if t.tzinfo is None else t for t in instants]
        assert [pd.Timestamp(v) for v in valid[TIME_COLUMN]] == instants
        assert all(pd.Timestamp(v).utcoffset() == pd.Timedelta(0) for v in valid[TIME_COLUMN])


@HOSTILE
@given(data=st.data())
def test_typed_formats_reject_bools_and_numeric_text_never_coerce(data: st.DataObject, tmp_path: Path, scorer: Scorer) -> None:
    """JSONL keeps JSON types: ``true`` or ``"42"`` in a numeric field rejects the row; valid rows come out equal."""
    folder = fresh_dir(tmp_path)
    table = SIMULATED.head(30).drop(columns="_true_propensity")
    table = table.assign(**{TIME_COLUMN: table[TIME_COLUMN].dt.strftime("%Y-%m-%dT%H:%M:%S")})
    records = json.loads(table.to_json(orient="records"))
    typed = [(True, "bad"), (False, "bad"), ("42", "bad"), ("7.5", "bad"), ("many", "bad"), (-1, "bad"), (-0.5, "bad"),
             (None, "ok"), (0, "ok"), (3.5, "ok"), (10**15, "ok")]  # fmt: skip
    broken: dict[int, set[str]] = {}
    for _ in range(data.draw(st.integers(0, 6), label="cells")):
        row, column = data.draw(st.integers(0, len(records) - 1)), data.draw(st.sampled_from(NUMERIC))
        value, kind = data.draw(st.sampled_from(typed))
        records[row][column] = value
        if kind == "bad":
            broken.setdefault(row, set()).add(column)
        else:
            broken.get(row, set()).discard(column)
    broken = {row: columns for row, columns in broken.items() if columns}
    source = folder / "crm.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = invoke("validate", source, "--drop-invalid", "--out", folder / "clean.jsonl")
    text = assert_clean_exit(result, EXIT_OK)
    assert counts(r"([\d,]+) rows in: ([\d,]+) valid .*?([\d,]+) rejected", text) == [len(records), len(records) - len(broken), len(broken)]
    written = [json.loads(line) for line in (folder / "clean.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [r for i, r in enumerate(records) if i not in broken]
    assert len(written) == len(kept)
    for got, sent in zip(written, kept, strict=True):
        for key, value in sent.items():  # unchanged: same numbers (3 == 3.0 where a gap made the column float), same texts
            assert (got[key] is None and value is None) or got[key] == value, (key, value, got[key])
            assert type(got[key]) is not bool or type(value) is bool, key  # no number became a bool, or back
    rejected_file = folder / "clean.rejected.jsonl"
    assert rejected_file.exists() or not broken
    rejected_text = rejected_file.read_text(encoding="utf-8") if rejected_file.exists() else ""
    rejected_lines = [json.loads(line) for line in rejected_text.splitlines() if line.strip()]
    assert [r[ID_COLUMN] for r in rejected_lines] == [records[i][ID_COLUMN] for i in sorted(broken)]
    for line, row in zip(rejected_lines, sorted(broken), strict=True):
        for column in broken[row]:
            sent = records[row][column]  # as sent: "42" stays text, true stays a boolean, -1 the number -1
            assert line[column] == sent and isinstance(line[column], bool) == isinstance(sent, bool), (column, sent, line[column])
            assert column in line[REASON_COLUMN]
    summary = scorer.score_file(str(source), folder / "scores.csv")
    assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (len(records), len(kept), len(broken))


@pytest.mark.parametrize("kind", ["text numbers", "booleans"])
def test_a_parquet_numeric_column_of_text_or_bools_rejects_every_row(kind: str, tmp_path: Path) -> None:
    table = SIMULATED.head(10)
    column = table["customer_age"].astype(str) if kind == "text numbers" else table["customer_age"] > 30
    source = tmp_path / "crm.parquet"
    table.assign(customer_age=column).to_parquet(source)
    text = assert_clean_exit(invoke("validate", source, "--drop-invalid", "--out", tmp_path / "clean.parquet"), EXIT_OK)
    assert counts(r"([\d,]+) rows in: ([\d,]+) valid .*?([\d,]+) rejected", text) == [10, 0, 10]
    rejected = read_table(tmp_path / "clean.rejected.parquet")
    assert rejected["customer_age"].tolist() == column.tolist()  # as stored, never 1/0 or 42
    assert rejected[REASON_COLUMN].str.contains("customer_age").all()


# --------------------------------------------------------------------------- scoring


def _score_checks(cells: pd.DataFrame, expected: Expected, scores_path: Path, rejected_path: Path) -> tuple[pd.DataFrame, list[int]]:
    scores, rejected = read_rows(scores_path), read_rows(rejected_path)
    valid_rows, rejected_rows = align(cells, expected, scores[ID_COLUMN].tolist(), rejected[ID_COLUMN].tolist())
    check_reasons(expected, rejected_rows, rejected[REASON_COLUMN].tolist())
    assert scores[ID_COLUMN].map(lambda v: meaning(ID_COLUMN, v)).is_unique
    assert np.isfinite(scores["rank_score"].to_numpy(dtype=float)).all()
    assert scores["probability"].astype(float).between(0, 1).all()
    assert_defused(scores_path, [cells.at[r, ID_COLUMN] for r in valid_rows])
    if rejected_path.exists():
        assert_defused(rejected_path, planted_ids(cells, rejected_rows))
        for column in cells.columns:  # the rejected rows hold what was sent, so they can be fixed and sent again
            assert [meaning(column, v) for v in rejected[column]] == [meaning(column, cells.at[r, column]) for r in rejected_rows], column
    return scores, valid_rows


@HOSTILE
@given(plan=plans(len(SMALL)), chunk_rows=st.sampled_from([len(SMALL), 7]))
@example(plan=EVERY_CLASS, chunk_rows=len(SMALL))
@example(plan=EVERY_CLASS, chunk_rows=7)
@example(plan=EVERY_CLASS + MIXED_ZONES, chunk_rows=len(SMALL))
@example(plan=NO_FEATURE, chunk_rows=7)
def test_score_file_scores_or_rejects_every_row(plan: list[tuple], chunk_rows: int, scorer: Scorer, tmp_path: Path) -> None:
    folder = fresh_dir(tmp_path)
    cells = apply(plan, SMALL)
    expected = expect(cells, labels=False, chunk_rows=chunk_rows)
    if expected.table_problem == "--timezone" and chunk_rows < len(cells):
        known = [text for text in cells[TIME_COLUMN] if text not in MISSING_WORDS]
        assume(TIME_CLASS.get(known[0], "naive") != "bad")  # open: ..._across_chunks_are_refused_when_the_first_time_is_broken
    source = write_csv(cells, folder / "leads.csv")
    before = source.read_bytes()
    if expected.table_problem:
        with pytest.raises(LeadDataError, match=re.escape(expected.table_problem.removeprefix("--"))):
            scorer.score_file(str(source), folder / "scores.csv", chunk_rows=chunk_rows)
        assert not (folder / "scores.csv").exists()
        return
    summary = scorer.score_file(str(source), folder / "scores.csv", chunk_rows=chunk_rows)
    assert source.read_bytes() == before
    assert summary.rows_in == len(cells) == summary.rows_scored + summary.rows_rejected
    scores, _ = _score_checks(cells, expected, folder / "scores.csv", folder / "scores.rejected.csv")
    assert len(scores) == summary.rows_scored
    assert (summary.rejected_path is None) == (summary.rows_rejected == 0)


@settings(HOSTILE, max_examples=15)
@given(plan=plans(len(SMALL)))
@example(plan=EVERY_CLASS)
@example(plan=EVERY_CLASS + MIXED_ZONES)
def test_leadrank_score_with_a_hot_list(plan: list[tuple], model_dir: Path, tmp_path: Path) -> None:
    folder = fresh_dir(tmp_path)
    cells = apply(plan, SMALL)
    expected = expect(cells, labels=False)
    source = write_csv(cells, folder / "leads.csv")
    out = folder / "scores.csv"
    result = invoke("score", model_dir, source, "--out", out, "--top", "3", "--threads", "1", "--dtype", "fp32")
    if expected.table_problem:
        assert expected.table_problem in assert_clean_exit(result, EXIT_DATA)
        assert not out.exists()
        return
    text = assert_clean_exit(result, EXIT_OK)
    rows_in, scored, rejected = counts(r"([\d,]+) leads in: ([\d,]+) scored .*?([\d,]+) rejected", text)
    assert rows_in == len(cells) == scored + rejected
    scores, _ = _score_checks(cells, expected, out, folder / "scores.rejected.csv")
    assert len(scores) == scored
    hot = read_rows(folder / "scores.top3.csv")
    best = scores.assign(rank_score=scores["rank_score"].astype(float)).sort_values("rank_score", ascending=False, kind="stable").head(3)
    assert hot[ID_COLUMN].tolist() == best[ID_COLUMN].tolist()
    assert_defused(folder / "scores.top3.csv", [unescape(v) for v in best[ID_COLUMN]])


def raw_ids(path: Path) -> list[str]:
    header, rows = raw_csv(path)
    return [row[header.index(ID_COLUMN)] for row in rows]


# --------------------------------------------------------------------------- encodings


@HOSTILE
@given(
    row=st.integers(0, len(SMALL) - 1),
    column=st.sampled_from([ID_COLUMN, "source", DIALOGUE]),
    byte=st.sampled_from([0x80, 0x81, 0x9C, 0xA0, 0xC0, 0xE9, 0xFF]),
)
def test_a_byte_that_is_not_utf8_is_named_with_the_fix(row: int, column: str, byte: int, scorer: Scorer, tmp_path: Path) -> None:
    folder = fresh_dir(tmp_path)
    cells = SMALL.copy()
    cells.at[row, column] = "MARK" + cells.at[row, column]
    raw = cells.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
    position = raw.index(b"MARK")
    source = folder / "export.csv"
    source.write_bytes(raw[:position] + bytes([byte]) + raw[position + 1 :])
    line = raw[:position].count(b"\n") + 1
    result = invoke("validate", source, "--no-labels")
    text = assert_clean_exit(result, EXIT_DATA)
    assert str(source) in text and f"line {line}" in text and f"0x{byte:02x}" in text
    fix = re.search(r"--encoding (\S+)", text)
    assert fix, text
    with pytest.raises(DataContractError, match=f"line {line}: byte 0x{byte:02x}"):
        scorer.score_file(str(source), folder / "scores.csv")
    assert not (folder / "scores.csv").exists()
    assert_clean_exit(invoke("validate", source, "--no-labels", "--encoding", fix.group(1)), EXIT_OK)  # the fix works
    summary = scorer.score_file(str(source), folder / "scores.csv", encoding=fix.group(1))
    assert summary.rows_scored == len(cells)


def test_leadrank_score_names_a_non_utf8_file_and_the_fix_works(model_dir: Path, tmp_path: Path) -> None:
    raw = SMALL.to_csv(index=False, lineterminator="\r\n").encode("utf-8").replace(b"Specialist", b"Sp\xe9cialist", 1)
    source = tmp_path / "latin.csv"
    source.write_bytes(raw)
    text = assert_clean_exit(invoke("score", model_dir, source, "--out", tmp_path / "s.csv"), EXIT_DATA)
    assert str(source) in text and "--encoding latin-1" in text
    assert not (tmp_path / "s.csv").exists()
    text = assert_clean_exit(invoke("score", model_dir, source, "--out", tmp_path / "s.csv", "--encoding", "latin-1"), EXIT_OK)
    assert counts(r"([\d,]+) leads in: ([\d,]+) scored", text) == [len(SMALL), len(SMALL)]


# --------------------------------------------------------------------------- nothing is lost


@settings(HOSTILE, max_examples=15)
@given(
    verb=st.sampled_from(["validate", "score"]),
    clash=st.sampled_from(["out", "rejected", "hot list"]),
    spelling=st.sampled_from(["same", "dotdot", "symlink", "hardlink"]),
    suffix=st.sampled_from([".csv", ".parquet", ".jsonl"]),
)
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(
    verb: str, clash: str, spelling: str, suffix: str, model_dir: Path, tmp_path: Path
) -> None:
    assume(not (verb == "validate" and clash == "hot list"))
    folder = fresh_dir(tmp_path)
    (folder / "sub").mkdir()
    name = {"out": "leads", "rejected": "scores.rejected", "hot list": "scores.top3"}[clash]
    source = folder / f"{name}{suffix}"
    if suffix == ".csv":
        write_csv(SMALL, source)
    elif suffix == ".parquet":
        SMALL.to_parquet(source)
    else:
        SMALL.to_json(source, orient="records", lines=True)
    before = source.read_bytes()
    clashing = folder / f"alias{'.rejected' if clash == 'rejected' else '.top3' if clash == 'hot list' else ''}{suffix}"
    if spelling == "same":
        clashing = source
    elif spelling == "dotdot":
        clashing = folder / "sub" / ".." / source.name
    elif spelling == "symlink":
        clashing.symlink_to(source)
    else:
        os.link(source, clashing)
    listing = sorted(p.name for p in folder.iterdir())
    out = clashing if clash == "out" else clashing.with_name(clashing.name.replace(".rejected", "").replace(".top3", ""))
    if verb == "validate":
        result = invoke("validate", source, "--no-labels", "--drop-invalid", "--out", out)
    else:
        result = invoke("score", model_dir, source, "--out", out, *(["--top", "3"] if clash == "hot list" else []))
    text = assert_clean_exit(result, EXIT_USAGE)
    assert "would destroy the input" in text
    assert source.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == listing  # nothing written at all


# --------------------------------------------------------------------------- the service

SERVICE_FIELDS = [ID_COLUMN, TIME_COLUMN, *FEATURES.input_columns]
SERVICE_LEADS = json.loads(SIMULATED.head(8)[SERVICE_FIELDS].to_json(orient="records", date_format="iso"))
NUMBER_VALUES = [(True, "shape"), ("42", "shape"), ("many", "shape"), ([1], "shape"), (-1, "contract"), (-0.5, "contract"),
                 (None, "ok"), (0, "ok"), (3.5, "ok"), (1e300, "ok")]  # fmt: skip
FLAG_VALUES = [("yes", "ok"), (0, "ok"), (None, "ok"), ("maybe", "shape"), ([1], "shape")]
CATEGORY_VALUES = [*((text, "ok") for text in ODD_TEXT), (None, "ok"), ("Customer: \ud800", "shape"), (["web"], "shape")]
DIALOGUE_VALUES = [*((text, "ok") for text in DIALOGUES if text != LONG), (LONG, "shape"), ("\udcff", "shape"), (None, "shape")]
ID_VALUES = [*((i, "ok") for i in FORMULA_IDS + ODD_IDS), ("", "shape"), (" \t ", "shape"), ("\ud800", "shape"), (None, "shape")]
AS_OF_VALUES = [("2024-03-01T09:30:00+08:00", "aware"), ("2024-03-01T01:30:00Z", "aware"), ("sometime last week", "contract")]


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[dict], set, set]:
    """A /score body and what the service must say: (leads, shape problems, contract problems) as (lead_index, field)."""
    chosen = draw(st.lists(st.integers(0, len(SERVICE_LEADS) - 1), min_size=1, max_size=4, unique=True))
    leads = [{k: (v, "ok") for k, v in SERVICE_LEADS[j].items()} for j in chosen]  # distinct ids unless a "dup" repeats one
    dropped: set[tuple[int, str]] = set()
    index = st.integers(0, len(leads) - 1)
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["number", "flag", "category", "dialogue", "id", "as_of", "dup", "drop"]))
        i = draw(index)
        if kind == "dup":
            source = leads[draw(index)]
            if ID_COLUMN in source:
                leads[i][ID_COLUMN] = source[ID_COLUMN]
                dropped.discard((i, ID_COLUMN))
            continue
        if kind == "drop":
            name = draw(st.sampled_from(SERVICE_FIELDS))
            leads[i].pop(name, None)
            dropped.add((i, name))
            continue
        name, values = {
            "number": (draw(st.sampled_from(NUMERIC)), NUMBER_VALUES),
            "flag": (draw(st.sampled_from(BOOLS)), FLAG_VALUES),
            "category": (draw(st.sampled_from(CATEGORICAL)), CATEGORY_VALUES),
            "dialogue": (DIALOGUE, DIALOGUE_VALUES),
            "id": (ID_COLUMN, ID_VALUES),
            "as_of": (TIME_COLUMN, AS_OF_VALUES),
        }[kind]
        leads[i][name] = draw(st.sampled_from(values))
        dropped.discard((i, name))
    shape = dropped | {(i, name) for i, lead in enumerate(leads) for name, (_, kind) in lead.items() if kind == "shape"}
    contract = {(i, name) for i, lead in enumerate(leads) for name, (_, kind) in lead.items() if kind == "contract"}
    seen: set = set()
    for i, lead in enumerate(leads):
        if ID_COLUMN in lead:
            value = lead[ID_COLUMN][0]
            if value in seen:
                contract.add((i, ID_COLUMN))
            seen.add(value)
    times = {lead[TIME_COLUMN][1] for lead in leads if TIME_COLUMN in lead}
    if {"ok", "aware"} <= times:  # "ok" as_of values are the simulator's naive ones
        contract.add((None, TIME_COLUMN))
    return [{k: v for k, (v, _) in lead.items()} for lead in leads], shape, contract


def _sendable_id(lead: dict) -> object:
    value = lead.get(ID_COLUMN)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@HOSTILE
@given(request=requests())
def test_the_service_answers_every_hostile_request_in_json(request: tuple[list[dict], set, set], client: TestClient) -> None:
    leads, shape, contract = request
    sent = [{k: LONG_TURN if v == LONG else v for k, v in lead.items()} for lead in leads]  # over the 100,000-character limit
    body = json.dumps({"leads": sent})  # ensure_ascii: a lone surrogate goes as the escape "\ud800", valid JSON
    response = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert "Traceback" not in response.text
    answer = response.json()
    if shape or contract:
        assert response.status_code == 422, response.text[:2000]
        problems = answer["problems"]
        assert {(p["lead_index"], p["field"]) for p in problems} == (shape or contract), answer
        for p in problems:
            assert p["message"] and p["fix"]
            if p["lead_index"] is not None:
                assert p["lead_id"] == _sendable_id(leads[p["lead_index"]])
        return
    assert response.status_code == 200, response.text[:2000]
    scores = answer["scores"]
    assert [s[ID_COLUMN] for s in scores] == [lead[ID_COLUMN] for lead in leads]  # as sent: JSON is not a spreadsheet
    assert all(0 <= s["probability"] <= 1 and math.isfinite(s["rank_score"]) for s in scores)


def test_a_200_kb_turn_is_scored_when_the_limit_allows_it(model_dir: Path) -> None:
    lead = {**SERVICE_LEADS[0], DIALOGUE: "Specialist: hello\n" + LONG_TURN}
    with TestClient(create_app(model_dir, ServeSettings(api_token=None, score=EXACT, max_dialogue_chars=300_000))) as roomy:
        response = roomy.post("/score", content=json.dumps({"leads": [lead]}), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text[:500]
    [score] = response.json()["scores"]
    assert score[ID_COLUMN] == lead[ID_COLUMN] and 0 <= score["probability"] <= 1


# --------------------------------------------------------------------------- named cases, always run


def test_mixed_time_zones_are_refused_by_validate_and_score_without_timezone(model_dir: Path, tmp_path: Path) -> None:
    cells = SMALL.copy()
    cells.loc[[3, 11], TIME_COLUMN] = ["2024-03-01T09:30:00+08:00", "2024-03-01T01:30:00Z"]
    source = write_csv(cells, tmp_path / "mixed.csv")
    assert "--timezone" in assert_clean_exit(invoke("validate", source, "--no-labels"), EXIT_DATA)
    assert "--timezone" in assert_clean_exit(invoke("score", model_dir, source, "--out", tmp_path / "s.csv"), EXIT_DATA)
    assert not (tmp_path / "s.csv").exists()
    text = assert_clean_exit(invoke("validate", source, "--no-labels", "--timezone", "Asia/Shanghai"), EXIT_OK)
    assert "24 leads follow the contract" in text


def test_formula_ids_are_defused_in_scores_rejected_rows_and_hot_list(model_dir: Path, tmp_path: Path) -> None:
    cells = SMALL.copy()
    cells.loc[: len(FORMULA_IDS) - 1, ID_COLUMN] = FORMULA_IDS
    cells.loc[[0, 1, 2, 3], "customer_age"] = "-3"  # the first four are rejected, the rest scored
    source = write_csv(cells, tmp_path / "leads.csv")
    out = tmp_path / "scores.csv"
    text = assert_clean_exit(invoke("score", model_dir, source, "--out", out, "--top", str(len(SMALL))), EXIT_OK)
    assert counts(r"([\d,]+) leads in: ([\d,]+) scored .*?([\d,]+) rejected", text) == [24, 20, 4]
    assert raw_ids(tmp_path / "scores.rejected.csv") == ["'" + i for i in FORMULA_IDS[:4]]
    assert raw_ids(out)[:4] == ["'" + i for i in FORMULA_IDS[4:]]
    hot = raw_ids(tmp_path / f"scores.top{len(SMALL)}.csv")
    assert sorted(hot) == sorted(raw_ids(out)) and {"'" + i for i in FORMULA_IDS[4:]} <= set(hot)
    for path in (out, tmp_path / "scores.rejected.csv", tmp_path / f"scores.top{len(SMALL)}.csv"):
        assert_defused(path)


# --------------------------------------------------------------------------- bugs this suite found
# Bugs the suite found, fixed: these pin the fixes.


@pytest.mark.parametrize("cell", ["1_000", "４２", "١٢", "NAN"])
def test_a_number_spelled_the_python_way_is_one_rows_business(cell: str, scorer: Scorer, tmp_path: Path) -> None:
    """Python's float() reads these, pandas does not: once the whole file failed with exit 1 ('Unable to parse string')."""
    cells = SMALL.copy()
    cells.at[5, "customer_age"] = cell
    source = write_csv(cells, tmp_path / "leads.csv")
    verdict = invoke("validate", source, "--no-labels")
    refused = verdict.exit_code == EXIT_DATA
    assert_clean_exit(verdict, EXIT_DATA if refused else EXIT_OK)
    out = tmp_path / "clean.csv"
    text = assert_clean_exit(invoke("validate", source, "--no-labels", "--drop-invalid", "--out", out), EXIT_OK)
    assert counts(r"([\d,]+) rows in: ([\d,]+) valid .*?([\d,]+) rejected", text) == [24, 24 - refused, int(refused)]  # as validate said
    if not refused:  # kept: then as the number it spells, never another
        number = float(cell)
        assert meaning("customer_age", read_rows(out).at[5, "customer_age"]) == (None if math.isnan(number) else number)
    summary = scorer.score_file(str(source), tmp_path / "scores.csv")
    assert (summary.rows_scored, summary.rows_rejected) == (24 - refused, int(refused))


def test_mixed_time_zones_across_chunks_are_refused(scorer: Scorer, tmp_path: Path) -> None:
    """Once checked per chunk only: with --chunk-rows below the file's size the file was scored (exit 0)."""
    cells = SMALL.copy()
    cells.loc[12:, TIME_COLUMN] = "2024-03-01T09:30:00+08:00"  # rows 0-11 naive, 12-23 with an offset
    source = write_csv(cells, tmp_path / "mixed.csv")
    for chunk_rows in (len(cells), 12, 5):
        with pytest.raises(LeadDataError, match="timezone"):
            scorer.score_file(str(source), tmp_path / "scores.csv", chunk_rows=chunk_rows)
        assert not (tmp_path / "scores.csv").exists()


def test_mixed_time_zones_across_chunks_are_refused_when_the_first_time_is_broken(scorer: Scorer, tmp_path: Path) -> None:
    cells = SMALL.copy()
    cells.at[0, TIME_COLUMN] = "sometime last week"
    cells.loc[21:, TIME_COLUMN] = "2024-03-01T09:30:00+08:00"  # the last chunk of 7 rows: rows 21-23, all with an offset
    source = write_csv(cells, tmp_path / "mixed.csv")
    with pytest.raises(LeadDataError, match="timezone"):
        scorer.score_file(str(source), tmp_path / "whole.csv")  # one chunk: refused
    with pytest.raises(LeadDataError, match="timezone"):
        scorer.score_file(str(source), tmp_path / "chunked.csv", chunk_rows=7)


def test_which_rows_are_scored_does_not_depend_on_the_chunk_size(scorer: Scorer, tmp_path: Path) -> None:
    """A repeated lead_id whose first row is rejected: once scored across chunks, rejected within one."""
    cells = SMALL.copy()
    cells.at[0, "customer_age"] = "-1"
    cells.at[15, ID_COLUMN] = cells.at[0, ID_COLUMN]
    source = write_csv(cells, tmp_path / "leads.csv")
    whole = scorer.score_file(str(source), tmp_path / "whole.csv")
    chunked = scorer.score_file(str(source), tmp_path / "chunked.csv", chunk_rows=10)
    assert read_rows(tmp_path / "whole.csv")[ID_COLUMN].tolist() == read_rows(tmp_path / "chunked.csv")[ID_COLUMN].tolist()
    assert (whole.rows_scored, whole.rows_rejected) == (chunked.rows_scored, chunked.rows_rejected) == (22, 2)
    first, repeat = read_rows(tmp_path / "chunked.rejected.csv")[REASON_COLUMN]
    assert "customer_age" in first and "duplicate lead_id" in repeat


def test_requests_merged_into_one_batch_are_judged_on_their_own(model_dir: Path) -> None:
    """Once the merged micro-batch was validated as one table: naive and '+08:00' requests both got a 500."""
    naive = {**SERVICE_LEADS[0], TIME_COLUMN: "2024-03-01T09:30:00"}
    aware = {**SERVICE_LEADS[1], TIME_COLUMN: "2024-03-01T09:30:00+08:00"}
    answers: dict[str, httpx.Response] = {}
    app = create_app(model_dir, ServeSettings(api_token=None, score=EXACT, batch_wait_ms=1_000))
    with TestClient(app, raise_server_exceptions=False) as merged:
        assert merged.post("/score", json={"leads": [naive]}).status_code == 200  # each alone is fine
        assert merged.post("/score", json={"leads": [aware]}).status_code == 200
        batches = merged.get("/health").json()["batches"]
        barrier = threading.Barrier(2)

        def send(name: str, lead: dict) -> None:
            barrier.wait()
            answers[name] = merged.post("/score", json={"leads": [lead]})

        threads = [threading.Thread(target=send, args=item) for item in (("naive", naive), ("aware", aware))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        merged_into_one = merged.get("/health").json()["batches"] == batches + 1
    assert {name: a.status_code for name, a in answers.items()} == {"naive": 200, "aware": 200}, {n: a.text for n, a in answers.items()}
    assert [answers[n].json()["scores"][0][ID_COLUMN] for n in ("naive", "aware")] == [naive[ID_COLUMN], aware[ID_COLUMN]]
    assert merged_into_one  # the case this test is about: both in one micro-batch


def test_jsonl_keeps_every_digit_of_a_valid_number(tmp_path: Path) -> None:
    """Once JSONL was written with pandas' to_json default of 10 decimals (1e-12 came out 0.0)."""
    table = SIMULATED.head(5).drop(columns="_true_propensity")
    table = table.assign(
        **{TIME_COLUMN: table[TIME_COLUMN].dt.strftime("%Y-%m-%dT%H:%M:%S")},
        days_since_last_contact=[0.123456789012345, 1 / 3, 2.5, 1e-12, 7.0],
    )
    source = tmp_path / "crm.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in table.to_dict(orient="records")), encoding="utf-8")
    assert_clean_exit(invoke("validate", source, "--drop-invalid", "--out", tmp_path / "clean.jsonl"), EXIT_OK)
    written = [json.loads(line)["days_since_last_contact"] for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert written == table["days_since_last_contact"].tolist()


@pytest.mark.parametrize("option", [("--top", "0"), ("--top", "-2"), ("--rank-by", "bogus"), ("--chunk-rows", "0")])
def test_a_bad_option_value_of_score_is_a_usage_error(option: tuple[str, str], model_dir: Path, tmp_path: Path) -> None:
    """Once --top 0 / -2 and --rank-by bogus exited 1 (a plain ValueError), not 2."""
    source = write_csv(SMALL, tmp_path / "leads.csv")
    assert_clean_exit(invoke("score", model_dir, source, "--out", tmp_path / "s.csv", *option), EXIT_USAGE)
    assert not (tmp_path / "s.csv").exists()


def test_a_jsonl_number_too_big_for_64_bits_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    records = json.loads(SIMULATED.head(5).assign(as_of="2024-03-01").to_json(orient="records"))
    records[3]["customer_age"] = 10**20
    source = tmp_path / "crm.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    text = assert_clean_exit(invoke("validate", source), EXIT_DATA)
    assert str(source) in text
