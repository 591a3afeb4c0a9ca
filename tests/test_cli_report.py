"""`leadrank report`, driven through typer's CliRunner: leadrank.cli + leadrank.report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from test_report import STRONG, make_results_dir
from typer.testing import CliRunner, Result

import leadrank.cli as cli

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at 80 columns off a terminal; long tmp paths must stay on one line."""
    monkeypatch.setattr(cli, "console", Console(width=400))
    monkeypatch.setattr(cli, "err_console", Console(stderr=True, width=400))


def invoke(*args: str | Path) -> Result:
    result = runner.invoke(cli.app, [str(a) for a in args])
    result.clean_output = _ANSI.sub("", result.output)  # type: ignore[attr-defined]
    return result


def test_parent_folder_gives_one_report(tmp_path: Path) -> None:
    make_results_dir(tmp_path / "bench" / "table1", seeds=(0,), with_predictions=False)
    make_results_dir(tmp_path / "bench" / "table2", seeds=(0,), with_predictions=False)
    out = tmp_path / "report.html"
    result = invoke("report", tmp_path / "bench", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}: 2 suite(s)" in result.clean_output
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
    assert "No results.json in" in result.clean_output
    assert not (tmp_path / "r.html").exists()


def test_broken_results_name_the_field(tmp_path: Path) -> None:
    directory = make_results_dir(tmp_path / "x", seeds=(0,), with_predictions=False)
    raw = json.loads((directory / "results.json").read_text())
    raw["runs"][0]["seed"] = "first"
    (directory / "results.json").write_text(json.dumps(raw))
    result = invoke("report", directory, "--out", tmp_path / "r.html")
    assert result.exit_code == 1
    assert "field 'runs[0].seed'" in result.clean_output
