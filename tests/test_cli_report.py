"""`leadrank report`, driven through typer's CliRunner: leadrank.cli + leadrank.report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import STRONG, make_results_dir

from helpers import invoke, plain, widen_consoles


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


def test_parent_folder_gives_one_report(tmp_path: Path) -> None:
    make_results_dir(tmp_path / "bench" / "table1", seeds=(0,), with_predictions=False)
    make_results_dir(tmp_path / "bench" / "table2", seeds=(0,), with_predictions=False)
    out = tmp_path / "report.html"
    result = invoke("report", tmp_path / "bench", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}: 2 suite(s)" in plain(result)
    page = out.read_text(encoding="utf-8")
    assert page.count("<section>") == 2 and f"<td>{STRONG}</td>" in page


def test_results_dirs_listed_one_by_one(tmp_path: Path) -> None:
    first = make_results_dir(tmp_path / "a", seeds=(0,), with_predictions=False)
    second = make_results_dir(tmp_path / "b", seeds=(0,), with_predictions=False)
    out = tmp_path / "r.html"
    result = invoke("report", first, second, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").count("<section>") == 2


def test_folder_without_results_exits_1(tmp_path: Path) -> None:
    result = invoke("report", tmp_path, "--out", tmp_path / "r.html")
    assert result.exit_code == 1
    assert "No results.json in" in plain(result)
    assert not (tmp_path / "r.html").exists()


def test_broken_results_name_the_field(tmp_path: Path) -> None:
    directory = make_results_dir(tmp_path / "x", seeds=(0,), with_predictions=False)
    raw = json.loads((directory / "results.json").read_text())
    raw["runs"][0]["seed"] = "first"
    (directory / "results.json").write_text(json.dumps(raw))
    result = invoke("report", directory, "--out", tmp_path / "r.html")
    assert result.exit_code == 1
    assert "field 'runs[0].seed'" in plain(result)
