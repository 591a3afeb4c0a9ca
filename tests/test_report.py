"""Benchmark results rendering: leadrank.report."""

from __future__ import annotations

import html
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from leadrank import report
from leadrank.metrics import ranking_report
from leadrank.report import (
    draw_figures,
    find_results,
    interval_table,
    load_predictions,
    load_results,
    markdown_table,
    plot_learning_curve,
    summarise,
    summary_frame,
    write_report,
)

METRICS = ["auc", "pr_auc", "p@1%", "p@5%", "r@5%"]
ORACLE = "oracle (true propensity)"
STRONG, WEAK = "Model A", "Model B"
N_LEADS = 200


def _predictions(seeds: list[int]) -> pd.DataFrame:
    """Oracle ~ perfect, Model A informative, Model B noise; only A and the oracle give probabilities."""
    frames = []
    rng = np.random.default_rng(0)
    label = (rng.random(N_LEADS) < 0.2).astype(int)
    stage = np.where(label == 1, "lock", rng.choice(["defeat", "call", "test_drive"], N_LEADS))
    for seed in seeds:
        noise = np.random.default_rng(seed + 1).normal(size=(3, N_LEADS))
        scores = {ORACLE: label * 10 + noise[0] * 0.1, STRONG: label * 1.5 + noise[1], WEAK: noise[2]}
        for model, score in scores.items():
            probability = 1 / (1 + np.exp(-score)) if model != WEAK else np.full(N_LEADS, np.nan)
            frames.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "seed": seed,
                        "lead_id": [f"L{i:04d}" for i in range(N_LEADS)],
                        "label": label,
                        "stage": stage,
                        "score": score,
                        "probability": probability,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _runs(predictions: pd.DataFrame) -> list[dict]:
    """One run per (model, seed), in the order the predictions list them (oracle first)."""
    runs = []
    for (model, seed), part in predictions.groupby(["model", "seed"], sort=False):
        report = ranking_report(part["label"], part["score"])
        runs.append({"model": model, "seed": int(seed), **{m: report[m] for m in METRICS}, "minutes": 0.1 * (seed + 1)})
    return runs


def make_results_dir(directory: Path, seeds: tuple[int, ...] = (0, 1, 2), *, with_predictions: bool = True) -> Path:
    """A RESULTS directory as `leadrank bench` writes it: 2 models + oracle, random predictions."""
    predictions = _predictions(list(seeds))
    runs = _runs(predictions)
    results = {
        "suite": "table2",
        "title": "Funnel baselines vs asLLR",
        "created": "2026-11-29T17:00:00+00:00",
        "leadrank_version": "0.1.0",
        "command": f"leadrank bench --suite table2 --seeds {','.join(map(str, seeds))}",
        "data": {"source": "simulated dense, n=4000", "rows": 4000, "test_rows": N_LEADS},
        "seeds": list(seeds),
        "metrics": METRICS,
        "notes": ["P@0.1% omitted: the top 0.1% of 200 test leads is 1 lead (< 20)."],
        "runs": runs,
        "summary": summarise(runs),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2))
    if with_predictions:
        predictions.to_parquet(directory / "predictions.parquet", index=False)
    return directory


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results_dir(tmp_path_factory.mktemp("bench") / "table2")


@pytest.fixture(scope="module")
def report_html(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_report([results_dir], tmp_path_factory.mktemp("out") / "report.html").read_text(encoding="utf-8")


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


class TestSummary:
    def test_mean_and_sample_std_per_model(self, results_dir: Path) -> None:
        runs = load_results(results_dir).run_dicts()
        summary = {entry["model"]: entry for entry in summarise(runs)}
        for model in (ORACLE, STRONG, WEAK):
            for metric in [*METRICS, "minutes"]:
                values = [run[metric] for run in runs if run["model"] == model]
                assert summary[model]["n_seeds"] == 3
                assert summary[model][f"{metric}_mean"] == pytest.approx(statistics.mean(values))
                assert summary[model][f"{metric}_std"] == pytest.approx(statistics.stdev(values))

    def test_order_of_appearance_with_oracle_last(self) -> None:
        runs = [{"model": "oracle", "seed": 0, "auc": 1.0}, {"model": "b", "seed": 0, "auc": 0.6}, {"model": "a", "seed": 0, "auc": 0.7}]
        assert [entry["model"] for entry in summarise(runs)] == ["b", "a", "oracle"]

    def test_single_seed_has_no_std_and_nulls_are_skipped(self) -> None:
        runs = [{"model": "a", "seed": 0, "auc": 0.7, "p@0.1%": None, "backbone": "tiny"}]
        (entry,) = summarise(runs)
        assert entry == {"model": "a", "n_seeds": 1, "auc_mean": 0.7, "auc_std": None, "p@0.1%_mean": None, "p@0.1%_std": None}


class TestMarkdown:
    def test_one_row_per_model_oracle_last_with_notes(self, results_dir: Path) -> None:
        results = load_results(results_dir)
        text = markdown_table(results)
        rows = _table_rows(text)
        assert [row[0] for row in rows] == [STRONG, WEAK, ORACLE]
        auc = {entry["model"]: entry for entry in summarise(results.run_dicts())}[STRONG]
        assert rows[0][2] == f"{auc['auc_mean']:.3f} ± {auc['auc_std']:.3f}"
        assert results.notes[0] in text.split(rows[-1][0])[1]

    def test_single_seed_omits_std_and_says_n(self, tmp_path: Path) -> None:
        results = load_results(make_results_dir(tmp_path / "one", seeds=(0,)))
        frame = summary_frame(results)
        assert frame["seeds"].tolist() == [1, 1, 1]
        cells = frame[METRICS].to_numpy().ravel()
        assert all(re.fullmatch(r"\d\.\d{3}", cell) for cell in cells)
        assert "±" not in _table_rows(markdown_table(results))[0][2]


class TestFigures:
    def test_valid_pngs_for_each_view(self, results_dir: Path, tmp_path: Path) -> None:
        paths = draw_figures(load_results(results_dir), load_predictions(results_dir), tmp_path)
        assert [p.name for p in paths] == ["gain.png", "precision_at_k.png", "reliability.png", "stage_scores.png"]
        for path in paths:
            with Image.open(path) as image:
                assert image.format == "PNG"
                image.verify()
        assert not list(tmp_path.glob(".*.tmp"))

    def test_views_without_data_are_skipped(self, results_dir: Path, tmp_path: Path) -> None:
        predictions = load_predictions(results_dir).assign(probability=np.nan, stage=None)
        paths = draw_figures(load_results(results_dir), predictions, tmp_path)
        assert [p.name for p in paths] == ["gain.png", "precision_at_k.png"]

    def test_prediction_columns_are_checked(self, results_dir: Path, tmp_path: Path) -> None:
        make_results_dir(tmp_path, with_predictions=False)
        load_predictions(results_dir).drop(columns="score").to_parquet(tmp_path / "predictions.parquet")
        with pytest.raises(ValueError, match=r"lacks column\(s\) \['score'\]"):
            load_predictions(tmp_path)


class TestHtml:
    def test_standalone_with_embedded_figures(self, report_html: str) -> None:
        assert report_html.count('src="data:image/png;base64,') == 4
        assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", report_html)
        assert "<script" not in report_html

    def test_names_every_model_and_the_best_for_stages(self, report_html: str) -> None:
        for model in (STRONG, WEAK, ORACLE):
            assert f"<td>{model}</td>" in report_html
        assert f"Model: {STRONG}." in report_html
        assert "leadrank bench --suite table2 --seeds 0,1,2" in report_html
        assert "P@0.1% omitted" in report_html

    def test_missing_predictions_keeps_tables(self, tmp_path: Path) -> None:
        directory = make_results_dir(tmp_path / "nopred", with_predictions=False)
        page = write_report([directory], tmp_path / "r.html").read_text(encoding="utf-8")
        assert f"<td>{STRONG}</td>" in page
        assert "Figures unavailable: no predictions.parquet" in page
        assert "data:image/png" not in page

    def test_several_suites_in_one_file(self, results_dir: Path, tmp_path: Path) -> None:
        other = make_results_dir(tmp_path / "other", seeds=(0,), with_predictions=False)
        page = write_report([results_dir, other], tmp_path / "r.html").read_text(encoding="utf-8")
        assert page.count("<section>") == 2


def _curve_rows(sizes: tuple[int, ...] = (250, 1000, 4000), seeds: tuple[int, ...] = (0, 1)) -> list[dict]:
    """Two learners that improve with training size and an oracle that does not; P@1% is null for seed 1."""
    rows = []
    for model, gain in ((STRONG, 0.05), (WEAK, 0.01), (ORACLE, 0.0)):
        for size in sizes:
            for seed in seeds:
                value = 0.9 if model == ORACLE else 0.6 + gain * np.log10(size) + 0.01 * seed
                rows.append({"model": model, "train_size": size, "seed": seed, "auc": value, "p@1%": None if seed else value / 4})
    return rows


def _add_learning_curve(directory: Path, rows: list[dict]) -> Path:
    raw = json.loads((directory / "results.json").read_text())
    raw["learning_curve"] = rows
    (directory / "results.json").write_text(json.dumps(raw))
    return directory


class TestLearningCurve:
    @pytest.mark.parametrize("metric", ["auc", "p@1%"])
    def test_png_written(self, metric: str, tmp_path: Path) -> None:
        path = plot_learning_curve(_curve_rows(), tmp_path / "curve.png", metric)
        assert path == tmp_path / "curve.png"
        assert path.stat().st_size > 1000
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.verify()
        assert not list(tmp_path.glob(".*.tmp"))

    def test_single_size_and_no_oracle(self, tmp_path: Path) -> None:
        rows = [row for row in _curve_rows(sizes=(500,)) if row["model"] != ORACLE]
        assert plot_learning_curve(rows, tmp_path / "one.png").stat().st_size > 1000

    def test_metric_without_values(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"No learning-curve row of a non-oracle model has a value for 'pr_auc'"):
            plot_learning_curve(_curve_rows(), tmp_path / "curve.png", "pr_auc")
        oracle_only = [row for row in _curve_rows() if row["model"] == ORACLE]
        with pytest.raises(ValueError, match=r"non-oracle"):
            plot_learning_curve(oracle_only, tmp_path / "curve.png")

    def test_report_adds_one_figure_per_metric(self, tmp_path: Path) -> None:
        directory = _add_learning_curve(make_results_dir(tmp_path / "curve"), _curve_rows())
        assert len(load_results(directory).learning_curve) == 18
        page = write_report([directory], tmp_path / "r.html").read_text(encoding="utf-8")
        assert page.count('src="data:image/png;base64,') == 4 + 2  # prediction figures + auc and p@1%
        assert "Learning curve of auc: mean over seeds" in page
        assert "Learning curve of p@1%" in page and "Dashed: oracle." in page

    def test_report_draws_curves_without_predictions(self, tmp_path: Path) -> None:
        rows = [row for row in _curve_rows() if row["model"] != ORACLE]
        directory = _add_learning_curve(make_results_dir(tmp_path / "nopred", with_predictions=False), rows)
        page = write_report([directory], tmp_path / "r.html").read_text(encoding="utf-8")
        assert "Figures unavailable: no predictions.parquet" in page
        assert page.count('src="data:image/png;base64,') == 2
        assert "Dashed: oracle." not in page

    def test_bad_rows_name_the_field(self, tmp_path: Path) -> None:
        rows = _curve_rows()
        rows[3]["train_size"] = 0
        directory = _add_learning_curve(make_results_dir(tmp_path / "bad", with_predictions=False), rows)
        with pytest.raises(ValueError, match=r"field 'learning_curve\[3\]\.train_size'"):
            load_results(directory)


class TestIntervalTable:
    def test_cells_and_order(self) -> None:
        intervals = {
            ORACLE: {"auc": (0.95, 0.94, 0.96), "p@1%": (0.5, 0.45, 0.55)},
            STRONG: {"auc": (0.8123, 0.7901, 0.8346), "p@1%": (0.1234, 0.1012, 0.1456)},
            WEAK: {"auc": (0.5, 0.47, 0.53)},
        }
        text = interval_table(intervals, ["auc", "p@1%"])
        assert [cell.strip() for cell in text.splitlines()[0].strip("|").split("|")] == ["model", "auc", "p@1%"]
        assert _table_rows(text) == [
            [STRONG, "0.812 [0.790, 0.835]", "12.3% [10.1%, 14.6%]"],
            [WEAK, "0.500 [0.470, 0.530]", "n/a"],
            [ORACLE, "0.950 [0.940, 0.960]", "50.0% [45.0%, 55.0%]"],
        ]


class TestErrors:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="No results.json in"):
            load_results(tmp_path)

    @pytest.mark.parametrize(
        ("breakage", "field"),
        [
            (lambda r: r["runs"][1].update(auc="high"), r"field 'runs\[1\]\.auc'"),
            (lambda r: r["runs"][2].pop("seed"), r"field 'runs\[2\]\.seed'"),
            (lambda r: r.pop("title"), r"field 'title'"),
            (lambda r: r["runs"][0].pop("p@5%"), r"runs\[0\] .* lacks metric\(s\) \['p@5%'\]"),
        ],
    )
    def test_broken_results_name_the_field(self, results_dir: Path, tmp_path: Path, breakage, field: str) -> None:
        raw = json.loads((results_dir / "results.json").read_text())
        breakage(raw)
        (tmp_path / "results.json").write_text(json.dumps(raw))
        with pytest.raises(ValueError, match=field):
            load_results(tmp_path)

    def test_invalid_json(self, tmp_path: Path) -> None:
        (tmp_path / "results.json").write_text("{not json")
        with pytest.raises(ValueError, match="not valid JSON"):
            load_results(tmp_path)


class TestFindResults:
    def test_parent_directory_is_searched(self, tmp_path: Path) -> None:
        first, second = make_results_dir(tmp_path / "a", with_predictions=False), make_results_dir(tmp_path / "b", with_predictions=False)
        assert find_results([tmp_path]) == [first, second]
        assert find_results([second]) == [second]

    def test_nothing_found(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="No results.json in"):
            find_results([tmp_path])
        with pytest.raises(FileNotFoundError, match="is not a directory"):
            find_results([tmp_path / "absent"])


HOSTILE = "<script>alert(1)</script>"
MATH = r"$\frac{$"  # matplotlib would read this as (broken) math text


def _set_fields(directory: Path, **fields: object) -> Path:
    raw = json.loads((directory / "results.json").read_text())
    raw.update(fields)
    (directory / "results.json").write_text(json.dumps(raw))
    return directory


def _rename_model(directory: Path, old: str, new: str) -> None:
    raw = json.loads((directory / "results.json").read_text())
    for run in raw["runs"]:
        run["model"] = new if run["model"] == old else run["model"]
    (directory / "results.json").write_text(json.dumps(raw))
    predictions = pd.read_parquet(directory / "predictions.parquet")
    predictions["model"] = predictions["model"].replace({old: new})
    predictions.to_parquet(directory / "predictions.parquet", index=False)


def _hostile_results_dir(directory: Path, text: str) -> Path:
    """A results directory with ``text`` as a model name, a lead id, a stage, the suite, title, data name, note and command."""
    make_results_dir(directory)
    _rename_model(directory, WEAK, text)
    predictions = pd.read_parquet(directory / "predictions.parquet")
    predictions.loc[predictions.index[::7], "lead_id"] = text
    predictions.loc[predictions["stage"] == "defeat", "stage"] = text
    predictions.to_parquet(directory / "predictions.parquet", index=False)
    return _set_fields(directory, suite=text, title=text, command=text, notes=[text], data={"source": text, "rows": 4000})


def _section_suites(page: str) -> list[str]:
    return re.findall(r'<section><h2 id="suite-\d+">.*?<small>\((.*?)\)</small></h2>', page)


def _summary(page: str) -> str:
    return page.split('<div class="summary">', 1)[1].split("</div>", 1)[0]


class TestHostileText:
    def test_every_user_string_is_escaped(self, tmp_path: Path) -> None:
        page = write_report([_hostile_results_dir(tmp_path / "bad", HOSTILE)], tmp_path / "r.html").read_text(encoding="utf-8")
        assert "<script" not in page
        escaped = html.escape(HOSTILE)
        assert f"<td>{escaped}</td>" in page  # the model, in the suite's table
        assert f"<title>{escaped}</title>" in page and f"<h1>{escaped}</h1>" in page
        assert f'<a href="#suite-0">{escaped}</a>' in _summary(page)
        assert f"source: {escaped}" in page and f"<li>{escaped}</li>" in page and f"<code>{escaped}</code>" in page
        assert page.count('src="data:image/png;base64,') == 4
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # offline: no CDN, no remote asset

    def test_dollar_signs_are_drawn_literally(self, tmp_path: Path) -> None:
        directory = _hostile_results_dir(tmp_path / "math", MATH)
        _rename_model(directory, STRONG, f"{STRONG} {MATH}")  # the best model: named in the stage figure's title
        page = write_report([directory], tmp_path / "r.html").read_text(encoding="utf-8")
        assert page.count('src="data:image/png;base64,') == 4


class TestSummaryHtml:
    def test_page_opens_on_the_best_model_and_what_its_top_leads_find(self, results_dir: Path, report_html: str) -> None:
        assert report_html.index('<div class="summary">') < report_html.index("<section>")
        summary = _summary(report_html)
        (row,) = re.findall(r"<tr><td><a.*?</tr>", summary)
        entry = {e["model"]: e for e in summarise(load_results(results_dir).run_dicts())}[STRONG]
        predictions = load_predictions(results_dir)
        found = np.mean(
            [
                part.nlargest(N_LEADS // 10, "score")["label"].sum() / part["label"].sum()
                for _, part in predictions[predictions["model"] == STRONG].groupby("seed")
            ]
        )
        assert f"<td>{STRONG} <small>(highest mean auc)</small></td>" in row
        assert f"<td>{entry['auc_mean']:.3f} ± {entry['auc_std']:.3f}</td>" in row
        assert f"<td>{entry['p@1%_mean']:.1%} ± {entry['p@1%_std']:.1%}</td>" in row
        assert f"<td>{found:.1%} of the buyers</td>" in row
        assert "calling its top 10% of leads finds" in summary and "never the best" in summary

    def test_without_predictions_the_share_found_is_na(self, tmp_path: Path) -> None:
        directory = make_results_dir(tmp_path / "nopred", with_predictions=False)
        page = write_report([directory], tmp_path / "r.html").read_text(encoding="utf-8")
        assert "<td>n/a: no predictions.parquet</td>" in _summary(page)

    def test_suites_in_reading_order(self, tmp_path: Path) -> None:
        given = ["rankby", "custom", "table1", "demo", "table2"]
        dirs = [_set_fields(make_results_dir(tmp_path / name, seeds=(0,), with_predictions=False), suite=name) for name in given]
        page = write_report(dirs, tmp_path / "r.html").read_text(encoding="utf-8")
        assert _section_suites(page) == ["demo", "table1", "table2", "rankby", "custom"]
        assert re.findall(r'<a href="#suite-\d+">(.*?)</a>', _summary(page)) == ["demo", "table1", "table2", "rankby", "custom"]

    def test_title_comes_from_the_results_or_the_caller(self, results_dir: Path, tmp_path: Path) -> None:
        table1 = _set_fields(make_results_dir(tmp_path / "t1", seeds=(0,), with_predictions=False), suite="table1")
        one = write_report([results_dir], tmp_path / "one.html").read_text(encoding="utf-8")
        assert "<title>Funnel baselines vs asLLR</title>" in one
        several = write_report([results_dir, table1], tmp_path / "two.html").read_text(encoding="utf-8")
        assert "<h1>leadrank benchmark: table1, table2</h1>" in several
        demo = write_report([results_dir], tmp_path / "demo.html", title="leadrank demo: 14,000 leads").read_text(encoding="utf-8")
        assert "<title>leadrank demo: 14,000 leads</title>" in demo and "<h1>leadrank demo: 14,000 leads</h1>" in demo
        assert "leadrank benchmark report" not in one + several + demo


def _many_models(n_models: int = 15) -> tuple[pd.DataFrame, list[str]]:
    """Predictions of ``n_models`` models with long names and the oracle, one seed."""
    base = _predictions([0])
    oracle, strong = base[base["model"] == ORACLE], base[base["model"] == STRONG]
    names = [f"model {i:02d}: a long and descriptive name" for i in range(n_models)]
    frames = [strong.assign(model=name, score=strong["score"] + 0.1 * i) for i, name in enumerate(names)]
    return pd.concat([*frames, oracle], ignore_index=True), [*names, ORACLE]


def _check_legend_outside(figure: Figure) -> list[str]:
    """The figure's one legend lies inside the figure and off every plot; its labels."""
    FigureCanvasAgg(figure).draw()
    (legend,) = figure.legends
    box = legend.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= figure.bbox.width and 0 <= box.y0 and box.y1 <= figure.bbox.height
    for ax in figure.axes:
        assert not box.overlaps(ax.get_window_extent())
        assert ax.get_legend() is None
    return [text.get_text() for text in legend.get_texts()]


def _distinct_styles(ax: object, models: list[str]) -> None:
    styles = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines() if line.get_label() in models]
    assert len(styles) == len(models) and len(set(styles)) == len(models)


class TestFigureLegibility:
    def test_sixteen_models_get_distinct_lines_and_the_legend_stays_off_the_plots(self) -> None:
        predictions, models = _many_models()
        for build, extra in (
            (report._gain_figure, ["random"]),
            (report._precision_figure, ["base rate"]),
            (report._reliability_figure, ["perfectly calibrated"]),
        ):
            figure = build(predictions, models)
            _distinct_styles(figure.axes[0], models)
            assert sorted(_check_legend_outside(figure)) == sorted(models + extra)

    def test_learning_curve_legend_stays_off_the_plot(self) -> None:
        rows = [{**row, "model": f"{row['model']}: a long and descriptive name {i}"} for i in range(6) for row in _curve_rows()]
        figure = report._learning_curve_figure(rows, "auc")
        assert len(_check_legend_outside(figure)) == 18
