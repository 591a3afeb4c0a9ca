"""The command line's one error boundary: exit codes by kind, no traceback, --debug, --version."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pandas as pd
import pytest

from helpers import invoke, plain, train_tiny_model, widen_consoles
from leadrank import cli
from leadrank.data.io import write_table
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import EXIT_DATA, EXIT_ENVIRONMENT, EXIT_USAGE
from leadrank.rules import MAX_RULE_CHARS, Rule, RuleError


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return simulate(SynthConfig(n=300, seed=5))


def no_traceback(output: str) -> bool:
    return "Traceback" not in output and 'File "' not in output


def test_version_prints_the_installed_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert plain(result).strip() == f"leadrank {importlib.metadata.version('leadrank')}"


class TestExitCodes:
    def test_a_bad_flag_value_is_a_usage_error(self, tmp_path: Path) -> None:
        result = invoke("synth", "--n", "100", "--preset", "sparse", "--out", tmp_path / "x.parquet")
        assert result.exit_code == EXIT_USAGE
        assert "Unknown preset 'sparse'" in plain(result)

    def test_a_table_that_breaks_the_contract_exits_3_and_names_the_specs(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        path = write_table(leads.drop(columns="customer_age"), tmp_path / "bad.parquet")
        result = invoke("validate", path)
        assert result.exit_code == EXIT_DATA
        out = plain(result)
        assert "customer_age" in out and "shipped NEV spec (pass --features for your own)" in out
        assert no_traceback(out)

    def test_malformed_yaml_config_is_a_usage_error_without_traceback(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        config = tmp_path / "run.yaml"
        config.write_text("model: [unclosed\n  mode: frozen\n")
        result = invoke("train", write_table(leads, tmp_path / "l.parquet"), "--out", tmp_path / "m", "--config", config)
        assert result.exit_code == EXIT_USAGE
        assert "run.yaml, line" in plain(result)
        assert no_traceback(plain(result))

    def test_an_output_under_a_regular_file_is_an_environment_problem(self, tmp_path: Path) -> None:
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        result = invoke("synth", "--n", "100", "--out", blocker / "leads.parquet")
        assert result.exit_code == EXIT_ENVIRONMENT
        assert "a_file" in plain(result)
        assert no_traceback(plain(result))
        assert blocker.read_text() == "not a folder"

    def test_a_funnel_rule_nested_thousands_deep_is_a_data_error(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        funnel = tmp_path / "funnel.yaml"
        rule = "not " * 3000 + "stage == 'lock'"
        funnel.write_text(
            "stages: [defeat, new, call, test_drive, lock]\nstage_column: funnel_stage\nlabel_column: label\n"
            f'tiers:\n  - name: deep\n    winner: "{rule}"\n    loser: "stage == \'defeat\'"\n    margin: 1.0\n'
        )
        result = invoke("validate", write_table(leads, tmp_path / "l.parquet"), "--funnel", funnel)
        assert result.exit_code in (EXIT_DATA, EXIT_USAGE)
        assert no_traceback(plain(result))


class TestUnexpectedErrors:
    @pytest.fixture
    def broken_synth(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def explode(*args: object, **kwargs: object) -> None:
            raise RuntimeError("something nobody planned for")

        monkeypatch.setattr("leadrank.data.synth.simulate", explode)

    def test_show_a_short_message_and_the_debug_hint(self, broken_synth: None, tmp_path: Path) -> None:
        result = invoke("synth", "--n", "10", "--out", tmp_path / "x.parquet")
        assert result.exit_code == EXIT_ENVIRONMENT
        out = plain(result)
        assert "something nobody planned for" in out and "--debug" in out
        assert no_traceback(out)

    def test_debug_lets_the_traceback_through(self, broken_synth: None, tmp_path: Path) -> None:
        result = invoke("--debug", "synth", "--n", "10", "--out", tmp_path / "x.parquet")
        assert isinstance(result.exception, RuntimeError)

    def test_the_debug_flag_does_not_stick_to_the_next_command(self, broken_synth: None, tmp_path: Path) -> None:
        invoke("--debug", "synth", "--n", "10", "--out", tmp_path / "x.parquet")
        result = invoke("synth", "--n", "10", "--out", tmp_path / "x.parquet")
        assert result.exit_code == EXIT_ENVIRONMENT and not isinstance(result.exception, RuntimeError)


def test_a_usage_error_from_click_keeps_its_exit_code() -> None:
    result = invoke("synth", "--no-such-flag")
    assert result.exit_code == EXIT_USAGE


class TestRules:
    def test_an_overlong_rule_is_refused_before_parsing(self) -> None:
        with pytest.raises(RuleError, match="characters long"):
            Rule("not " * MAX_RULE_CHARS + "x == 1")

    def test_a_deeply_nested_rule_is_a_rule_error(self) -> None:
        with pytest.raises(RuleError):
            Rule("(" * 600 + "x == 1" + ")" * 600)

    def test_an_ordinary_rule_still_parses(self) -> None:
        assert Rule("stage == 'lock' and calls > 1").columns == {"stage", "calls"}


def test_every_model_verb_takes_threads() -> None:
    import typer.main

    group = typer.main.get_command(cli.app)
    for verb in ("train", "evaluate", "score", "explain", "serve", "bench", "demo", "retrain"):
        options = {opt for param in group.commands[verb].params for opt in getattr(param, "opts", [])}
        assert "--threads" in options, verb


class TestNothingLost:
    """No verb writes over one of its inputs (or a folder holding one)."""

    def test_score_refuses_to_write_over_the_table_it_scores(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        model = train_tiny_model(leads, tmp_path)
        table = write_table(leads, tmp_path / "t.csv")
        before = table.read_bytes()
        result = invoke("score", model, table, "--out", table)
        assert result.exit_code == EXIT_USAGE
        assert "would destroy the input" in plain(result)
        assert table.read_bytes() == before

    def test_score_refuses_an_output_that_links_to_the_table(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        model = train_tiny_model(leads, tmp_path)
        table = write_table(leads, tmp_path / "t.parquet")
        link = tmp_path / "scores.parquet"
        link.symlink_to(table)
        result = invoke("score", model, table, "--out", link)
        assert result.exit_code == EXIT_USAGE
        assert pd.read_parquet(table).shape == leads.shape

    def test_validate_refuses_to_write_the_valid_rows_over_the_input(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        table = write_table(leads, tmp_path / "t.parquet")
        result = invoke("validate", table, "--drop-invalid", "--out", table)
        assert result.exit_code == EXIT_USAGE
        assert pd.read_parquet(table).shape == leads.shape

    def test_train_refuses_a_model_folder_that_holds_the_table(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        folder = tmp_path / "work"
        folder.mkdir()
        table = write_table(leads, folder / "t.parquet")
        result = invoke("train", table, "--out", folder, "--backbone", "tiny")
        assert result.exit_code == EXIT_USAGE
        assert "holds the input" in plain(result)
        assert table.exists()

    def test_split_refuses_one_file_for_both_parts(self, tmp_path: Path, leads: pd.DataFrame) -> None:
        table = write_table(leads, tmp_path / "t.parquet")
        same = tmp_path / "part.parquet"
        assert invoke("split", table, "--train", same, "--test", same).exit_code == EXIT_USAGE


def test_a_latin1_csv_reads_with_encoding(tmp_path: Path, leads: pd.DataFrame) -> None:
    path = tmp_path / "latin1.csv"
    leads.assign(dialogue=leads["dialogue"].fillna("") + " café").to_csv(path, index=False, encoding="latin-1")
    refused = invoke("validate", path)
    assert refused.exit_code == EXIT_DATA
    assert "latin-1" in plain(refused) and "latin1.csv" in plain(refused)
    assert invoke("validate", path, "--encoding", "latin-1").exit_code == 0


def test_evaluate_prints_p_at_20_and_writes_its_scores(tmp_path: Path, leads: pd.DataFrame) -> None:
    model = train_tiny_model(leads, tmp_path)
    table = write_table(leads, tmp_path / "t.parquet")
    result = invoke("evaluate", model, table, "--out", tmp_path / "scores.csv")
    assert result.exit_code == 0, plain(result)
    assert "p@20%" in plain(result) and "of the buyers" in plain(result)
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["lead_id", "label", "probability", "rank_score"]
    assert len(scores) == len(leads) and scores["label"].sum() == leads["label"].sum()


def test_mixed_time_zones_need_a_timezone_and_then_come_out_in_utc(tmp_path: Path, leads: pd.DataFrame) -> None:
    mixed = leads.head(40).copy()
    mixed["as_of"] = ["2024-03-01T09:30:00", "2024-03-01T09:30:00+08:00", "2024-03-01T01:30:00Z", "2024-03-02 10:00"] * 10
    path = write_table(mixed, tmp_path / "mixed.csv")
    refused = invoke("validate", path)
    assert refused.exit_code == EXIT_DATA and "--timezone" in plain(refused)
    clean = tmp_path / "clean.parquet"
    result = invoke("validate", path, "--timezone", "Asia/Shanghai", "--drop-invalid", "--out", clean)
    assert result.exit_code == 0, plain(result)
    times = pd.read_parquet(clean)["as_of"]
    assert str(times.dt.tz) == "UTC" and times.iloc[0] == times.iloc[1] == times.iloc[2] == pd.Timestamp("2024-03-01T01:30:00Z")
    assert invoke("validate", clean).exit_code == 0
