"""The A/B test's figure: cumulative conversion per arm with interval bands (matplotlib is imported here only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from leadrank._files import atomic_path
from leadrank.abtest.analysis import Analysis
from leadrank.abtest.columns import ARM_COLUMN, CONFIDENCE, DATE_COLUMN

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Printed under the cumulative figure: why an early gap between the arms means little.
EARLY_DAYS_NOTE = (
    "Shaded: {confidence:.0%} interval of each arm's rate so far (specialists as the unit). The first days rest on "
    "few leads and swing widely; read the result at the planned end of the test, not when the lines first part."
)


def plot_cumulative(analysis: Analysis, path: str | os.PathLike[str]) -> Path:
    """Write a PNG of cumulative conversion per arm over the test's days, with interval bands (atomically); return its path."""
    figure = _cumulative_figure(analysis)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return Path(path)


def _cumulative_figure(analysis: Analysis) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    for arm, rows in analysis.cumulative.groupby(ARM_COLUMN, sort=False):
        label = str(arm).replace("$", r"\$")  # a $ would start matplotlib's math text
        (line,) = axes.plot(rows[DATE_COLUMN], rows["conversion_rate"], marker=".", label=label)
        axes.fill_between(
            rows[DATE_COLUMN], rows["conversion_low"], rows["conversion_high"], color=line.get_color(), alpha=0.2, linewidth=0
        )
    axes.set_title("Cumulative conversion per arm")
    axes.set_xlabel("date")
    axes.set_ylabel("conversions / leads so far")
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.grid(alpha=0.3)
    figure.legend(loc="outside right upper")  # beside the plot, never over a line
    figure.supxlabel(EARLY_DAYS_NOTE.format(confidence=CONFIDENCE), fontsize=8, color="0.3", wrap=True)
    figure.autofmt_xdate()
    return figure
