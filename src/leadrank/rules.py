"""A tiny, safe expression language for funnel tier rules.

Rules look like Python comparisons over table columns::

    stage == 'test_drive'
    stage in ('call', 'defeat')
    stage == 'call' and call_duration_s >= 120

They are parsed with :mod:`ast` and checked against a whitelist (names, string/number/bool
constants, tuples of constants, comparisons, ``and``/``or``/``not``); nothing is ever passed
to ``eval``. A compiled rule evaluates vectorised on a :class:`pandas.DataFrame` and returns
a boolean mask; a missing value makes a comparison false.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from leadrank.errors import DataContractError

_COMPARE: dict[type[ast.cmpop], Callable[[pd.Series, object], pd.Series]] = {
    ast.Eq: operator.eq,
    ast.NotEq: lambda col, value: col.ne(value) & col.notna(),
    ast.Lt: lambda col, value: col < value,
    ast.LtE: lambda col, value: col <= value,
    ast.Gt: lambda col, value: col > value,
    ast.GtE: lambda col, value: col >= value,
    ast.In: lambda col, values: col.isin(values),
    ast.NotIn: lambda col, values: ~col.isin(values) & col.notna(),
}

_ALLOWED = "column names, 'text' or number constants, tuples of constants, ==, !=, <, <=, >, >=, in, not in, and, or, not, parentheses"


MAX_RULE_CHARS = 2_000
"""Longest rule text accepted: real tier rules are a line; a longer one is a mistake or an attack."""


class RuleError(DataContractError):
    """A tier rule that cannot be parsed or evaluated."""


class Rule:
    """A parsed rule. ``aliases`` maps names used in the text to table columns."""

    def __init__(self, text: str, aliases: Mapping[str, str] | None = None) -> None:
        self.text = text
        self._aliases = dict(aliases or {})
        if len(text) > MAX_RULE_CHARS:
            raise RuleError(f"Rule {text[:60]!r}... is {len(text):,} characters long (at most {MAX_RULE_CHARS:,}); write it shorter.")
        self.columns: frozenset[str] = frozenset()
        self.constants: dict[str, set[object]] = {}
        try:
            self._tree = ast.parse(text.strip(), mode="eval").body
            self._check(self._tree)
        except SyntaxError as exc:
            raise RuleError(f"Rule {text!r} is not valid: {exc.msg}. Allowed: {_ALLOWED}.") from None
        except RecursionError:
            raise RuleError(f"Rule {text[:60]!r}... is nested too deeply; write it with fewer nested parts.") from None

    def _column(self, name: str) -> str:
        return self._aliases.get(name, name)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check(node.operand)
        elif isinstance(node, ast.Compare):
            if len(node.ops) != 1 or not isinstance(node.left, ast.Name):
                raise RuleError(
                    f"Rule {self.text!r}: write each comparison as `column OP value` "
                    f"(one operator, column on the left), e.g. stage == 'lock'."
                )
            if type(node.ops[0]) not in _COMPARE:
                raise RuleError(f"Rule {self.text!r}: operator not allowed. Allowed: {_ALLOWED}.")
            column = self._column(node.left.id)
            self.columns = self.columns | {column}
            self.constants.setdefault(column, set()).update(_constant_values(node.comparators[0], self.text))
        else:
            raise RuleError(f"Rule {self.text!r}: {type(node).__name__} is not allowed. Allowed: {_ALLOWED}.")

    def evaluate(self, table: pd.DataFrame) -> np.ndarray:
        """Boolean mask, one entry per row of ``table``."""
        missing = sorted(self.columns - set(table.columns))
        if missing:
            raise RuleError(
                f"Rule {self.text!r} needs column(s) {missing}, which the table does not have. "
                f"Add them to the table or change the rule in the FunnelSpec."
            )
        return np.asarray(self._eval(self._tree, table), dtype=bool)

    def _eval(self, node: ast.AST, table: pd.DataFrame) -> pd.Series:
        if isinstance(node, ast.BoolOp):
            parts = [self._eval(value, table) for value in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = parts[0]
            for part in parts[1:]:
                result = combine(result, part)
            return result
        if isinstance(node, ast.UnaryOp):
            return ~self._eval(node.operand, table)
        assert isinstance(node, ast.Compare) and isinstance(node.left, ast.Name)
        column = table[self._column(node.left.id)]
        values = _constant_values(node.comparators[0], self.text)
        op = type(node.ops[0])
        rhs: object = list(values) if op in (ast.In, ast.NotIn) else values[0]
        try:
            mask = _COMPARE[op](column, rhs)
        except TypeError as exc:
            raise RuleError(
                f"Rule {self.text!r} compares column {column.name!r} (dtype {column.dtype}) with "
                f"{rhs!r}: {exc}. Check the column's type or the constant in the rule."
            ) from None
        return pd.Series(mask, index=table.index).fillna(False).astype(bool)

    def __repr__(self) -> str:
        return f"Rule({self.text!r})"


def _constant_values(node: ast.AST, text: str) -> list[object]:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return [node.value]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        if isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
            return [-node.operand.value]
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
        return [value for element in node.elts for value in _constant_values(element, text)]
    raise RuleError(f"Rule {text!r}: the right side of a comparison must be a constant or a tuple of constants.")
