"""Tables the verbs print."""

from __future__ import annotations

import pandas as pd
from rich.table import Table

from leadrank.cli._common import console


def print_results(results: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for column in results.columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results.itertuples(index=False):
        cells = [row[0]] + [format_metric(name, value) for name, value in zip(results.columns[1:], row[1:])]
        table.add_row(*cells)
    console.print(table)


def format_metric(name: str, value: float) -> str:
    if pd.isna(value):
        return "n/a"
    return f"{value:.4f}" if name in ("auc", "pr_auc") else f"{value:.2%}"
