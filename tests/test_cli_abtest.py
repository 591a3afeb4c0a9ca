"""The ``leadrank abtest`` verbs (simulate, plan, analyze), driven through typer's CliRunner."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from helpers import concentrated_control_outcomes, invoke, widen_consoles
from helpers import plain as text
from leadrank import cli
from leadrank.data.io import read_table, write_table


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated floor and finished test: specialists.csv, assignment.csv, outcomes.csv."""
    out = tmp_path_factory.mktemp("abtest")
    result = invoke("abtest", "simulate", "--out-dir", out, "--specialists", "24", "--days", "14", "--uplift", "0.5", "--seed", "4")
    assert result.exit_code == 0, result.output
    return out


def test_simulate_writes_the_three_tables(demo: Path) -> None:
    specialists, assignment, outcomes = (read_table(demo / f"{name}.csv") for name in ("specialists", "assignment", "outcomes"))
    assert len(specialists) == 24 and set(assignment["arm"]) == {"control", "treatment"}
    assert set(outcomes["specialist_id"]) <= set(specialists["specialist_id"])
    assert set(outcomes.columns) >= {"specialist_id", "date", "converted"}


def test_plan_reproduces_the_simulated_assignment(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "assignment.parquet"
    result = invoke("abtest", "plan", demo / "specialists.csv", "--out", out, "--days", "14", "--seed", "4")
    assert result.exit_code == 0, result.output
    planned, simulated = read_table(out), read_table(demo / "assignment.csv")
    assert planned["arm"].tolist() == simulated["arm"].tolist()
    assert "Specialists per tier and arm" in text(result)
    assert re.search(r"lockins_30d\s+│\s+[\d.]+\s+│\s+[\d.]+\s+│\s+-?0\.0\d\d", text(result))
    assert re.search(r"Minimum detectable effect over 14 days .*12 control vs 12 treatment", text(result))
    assert "design effect" in text(result)


def test_plan_options_reach_the_library(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "assignment.csv"
    result = invoke("abtest", "plan", demo / "specialists.csv", "--out", out, "--arms", "3", "--leads-per-day", "12.5", "--days", "10")
    assert result.exit_code == 0, result.output
    assert set(read_table(out)["arm"]) == {"control", "treatment_1", "treatment_2"}
    assert "about 125 leads per specialist" in text(result)


def test_plan_says_when_it_derives_tiers(demo: Path, tmp_path: Path) -> None:
    no_tier = write_table(read_table(demo / "specialists.csv").drop(columns="tier"), tmp_path / "no_tier.jsonl")
    result = invoke("abtest", "plan", no_tier, "--out", tmp_path / "assignment.csv")
    assert result.exit_code == 0, result.output
    assert "No 'tier' column: the tiers are quartiles of 30-day conversion" in text(result)
    assert set(read_table(tmp_path / "assignment.csv")["tier"]) == {"q1", "q2", "q3", "q4"}


def test_plan_missing_column_exits_3(demo: Path, tmp_path: Path) -> None:
    broken = write_table(read_table(demo / "specialists.csv").drop(columns="lockins_7d"), tmp_path / "broken.csv")
    result = invoke("abtest", "plan", broken, "--out", tmp_path / "assignment.csv")
    assert result.exit_code == 3
    assert "lacks column(s) ['lockins_7d']" in text(result)
    assert not (tmp_path / "assignment.csv").exists()


def test_analyze_prints_the_outcome_and_writes_the_figure(demo: Path, tmp_path: Path) -> None:
    figure = tmp_path / "cumulative.png"
    result = invoke("abtest", "analyze", demo / "outcomes.csv", "--assignment", demo / "assignment.csv", "--out-figure", figure)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in text(result).splitlines() if line.startswith("│")}
    assert set(rows) == {"control", "treatment"}
    assert re.search(r"[+-]\d+\.\d% to [+-]\d+\.\d%", rows["treatment"])
    assert "Specialists are the unit" in text(result)
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_analyze_unknown_specialist_exits_3(demo: Path, tmp_path: Path) -> None:
    outcomes = read_table(demo / "outcomes.csv")
    outcomes.loc[0, "specialist_id"] = "S999"
    stray = write_table(outcomes, tmp_path / "outcomes.csv")
    result = invoke("abtest", "analyze", stray, "--assignment", demo / "assignment.csv")
    assert result.exit_code == 3
    assert "not in the assignment" in text(result) and "'S999'" in text(result)


def test_analyze_without_arm_or_assignment_exits_3(demo: Path) -> None:
    result = invoke("abtest", "analyze", demo / "outcomes.csv")
    assert result.exit_code == 3
    assert "lacks column(s) ['arm']" in text(result) and "pass the assignment" in text(result)


def test_analyze_with_an_arm_column(demo: Path, tmp_path: Path) -> None:
    assignment = read_table(demo / "assignment.csv")[["specialist_id", "arm"]]
    with_arm = read_table(demo / "outcomes.csv").merge(assignment, on="specialist_id")
    result = invoke("abtest", "analyze", write_table(with_arm, tmp_path / "outcomes.parquet"))
    assert result.exit_code == 0, result.output
    assert "treatment" in text(result)


def test_analyze_shows_the_difference_when_the_uplift_ci_is_undefined(tmp_path: Path) -> None:
    """Control's conversions all come from one specialist: the uplift CI is n/a, with the note; the difference CI is shown."""
    outcomes = concentrated_control_outcomes()
    result = invoke("abtest", "analyze", write_table(outcomes, tmp_path / "outcomes.csv"))
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in text(result).splitlines() if line.startswith("│")}
    assert "n/a (see note)" in rows["treatment"]
    assert "+12.50" in rows["treatment"] and re.search(r"[+-]\d+\.\d\d to [+-]\d+\.\d\d", rows["treatment"])
    assert "uplift CI not computed" in " ".join(text(result).split())


def test_plan_and_analyze_name_the_same_test(demo: Path, tmp_path: Path) -> None:
    planned = invoke("abtest", "plan", demo / "specialists.csv", "--out", tmp_path / "assignment.csv")
    analyzed = invoke("abtest", "analyze", demo / "outcomes.csv", "--assignment", demo / "assignment.csv")
    assert planned.exit_code == 0 and analyzed.exit_code == 0, planned.output + analyzed.output
    for result in (planned, analyzed):
        assert "Welch's two-sided t-test on specialist conversion rates" in " ".join(text(result).split())


def test_analyze_table_wraps_at_80_columns(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.abtest, "console", Console(width=80))
    result = invoke("abtest", "analyze", demo / "outcomes.csv", "--assignment", demo / "assignment.csv")
    assert result.exit_code == 0, result.output
    output = text(result)
    assert "…" not in output  # no cell is cut short
    assert max(len(line) for line in output.splitlines()) <= 80
    header = [line for line in output.splitlines() if line.startswith("┃")]
    assert "".join(line.split("┃")[2].strip() for line in header) == "specialists"  # the header folded, not cut


def test_arm_names_are_shown_as_written(tmp_path: Path) -> None:
    """An arm called "[/]treatment" is text, not rich markup (which would fail to parse)."""
    outcomes = concentrated_control_outcomes().replace({"arm": {"treatment": "[/]treatment"}})
    result = invoke("abtest", "analyze", write_table(outcomes, tmp_path / "outcomes.csv"))
    assert result.exit_code == 0, result.output
    assert "│ [/]treatment" in text(result) and "[/]treatment:" in text(result)
