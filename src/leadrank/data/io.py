"""Read and write lead tables: CSV, Parquet, JSONL and DuckDB.

The format follows the suffix of the path:

==========================  ===========================================================
suffix                      format
==========================  ===========================================================
``.csv``                    comma-separated text with a header row
``.parquet``, ``.pq``       Apache Parquet (written with pyarrow, index not written)
``.jsonl``, ``.ndjson``     one JSON object per line
``.duckdb``, ``.db``        a table in a DuckDB database: ``path.duckdb::table_name``;
                            the table is ``leads`` when ``::table_name`` is left out
==========================  ===========================================================

Reading never repairs data; the schema validator reports problems later, so it must see
them:

* ``lead_id`` is read as text from CSV, keeping leading zeros (``'007'``). Other formats
  keep the type they stored; a numeric id is reported by the validator, not converted here.
* ``dialogue`` is read as text from CSV and an empty field stays ``''`` (so do ``NA`` and
  ``null``: in a transcript they are words, not missing values). Other columns use pandas'
  usual missing-value markers.
* Nothing else is coerced: a stray word in a numeric CSV column leaves that column as
  text, and JSONL values keep their JSON types (``"007"`` stays a string).

Timestamps round-trip exactly through Parquet and DuckDB. CSV and JSONL store them as
ISO 8601 text and read that text back as text; :func:`leadrank.data.split.time_split`
parses it. A missing ``dialogue`` (NaN) is written to CSV as an empty field and so comes
back as ``''``.

Every write is atomic: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadrank._files import atomic_path
from leadrank.config import ID_COLUMN

__all__ = ["ChunkedWriter", "iter_table", "read_table", "write_table"]

_Format = Literal["csv", "parquet", "jsonl", "duckdb"]

_SUFFIXES: dict[str, _Format] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".duckdb": "duckdb",
    ".db": "duckdb",
}
_TABLE_SEPARATOR = "::"
_DEFAULT_DUCKDB_TABLE = "leads"
_DIALOGUE_COLUMN = "dialogue"
# pandas' documented default ``na_values``; applied to every CSV column except the dialogue.
_CSV_NA_VALUES = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
# JSONL is written with microsecond timestamps: the resolution pandas parses text into.
_JSON_DATE_UNIT = "us"


@dataclass(frozen=True)
class _Location:
    """Where a table lives: a file of some format, and for DuckDB the table inside it."""

    path: Path
    format: _Format
    table: str | None = None


def _locate(source: str | Path) -> _Location:
    """Parse ``source`` (``file.csv``, ``file.duckdb``, ``file.duckdb::table``, ...)."""
    text = str(source)
    table: str | None = None
    if _TABLE_SEPARATOR in text:
        text, table = text.rsplit(_TABLE_SEPARATOR, 1)
        if not table:
            raise ValueError(
                f"{source}: empty table name after '{_TABLE_SEPARATOR}'; "
                f"write 'file.duckdb::table_name', or leave out '::' for table {_DEFAULT_DUCKDB_TABLE!r}"
            )
    path = Path(text)
    suffix = path.suffix.lower()
    fmt = _SUFFIXES.get(suffix)
    if fmt is None:
        supported = ", ".join(_SUFFIXES)
        raise ValueError(
            f"{source}: unsupported file type {suffix or '(no suffix)'!r}; expected one of {supported} "
            f"(a DuckDB table is written 'file.duckdb::table_name')"
        )
    if fmt == "duckdb":
        return _Location(path, fmt, table or _DEFAULT_DUCKDB_TABLE)
    if table is not None:
        raise ValueError(
            f"{source}: '::{table}' names a table inside a DuckDB file (.duckdb, .db); {suffix} files have none"
        )
    return _Location(path, fmt)


def _existing(source: str | Path) -> _Location:
    location = _locate(source)
    if not location.path.is_file():
        raise FileNotFoundError(f"{location.path}: no such file (reading {str(source)!r})")
    return location


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _csv_options(path: Path) -> dict[str, Any]:
    """``read_csv`` arguments: ids and dialogue as text, empty dialogue kept as ``''``."""
    columns = list(pd.read_csv(path, nrows=0).columns)
    options: dict[str, Any] = {"dtype": {c: str for c in (ID_COLUMN, _DIALOGUE_COLUMN) if c in columns}}
    if _DIALOGUE_COLUMN in columns:
        options["keep_default_na"] = False
        options["na_values"] = {c: _CSV_NA_VALUES for c in columns if c != _DIALOGUE_COLUMN}
    return options


def _json_options() -> dict[str, Any]:
    # dtype=False: keep JSON's own types ('007' stays a string, dates stay text).
    return {"lines": True, "orient": "records", "dtype": False, "precise_float": True}


@contextlib.contextmanager
def _duckdb_reader(location: _Location) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """An open read-only connection and the ``SELECT`` for the table; a missing table names the others."""
    assert location.table is not None
    with duckdb.connect(str(location.path), read_only=True) as con:
        tables = [row[0] for row in con.sql("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        if location.table not in tables:
            raise ValueError(
                f"{location.path}: no table {location.table!r}; the database has {tables or 'no tables'}. "
                f"Name one as '{location.path}::table_name'."
            )
        yield con, f"SELECT * FROM {_quote(location.table)}"


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a whole lead table.

    Args:
        source: A path whose suffix names the format; for DuckDB ``file.duckdb::table``
            (table ``leads`` when left out).

    Returns:
        The table with a fresh ``RangeIndex``, types as stored (see the module docstring).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Unknown suffix, or the DuckDB table does not exist.

    Example:
        >>> leads = read_table("crm/leads.duckdb::snapshot_2024")  # doctest: +SKIP
    """
    location = _existing(source)
    if location.format == "csv":
        return pd.read_csv(location.path, **_csv_options(location.path))
    if location.format == "parquet":
        return pq.read_table(location.path).to_pandas()
    if location.format == "jsonl":
        return pd.read_json(location.path, **_json_options())
    with _duckdb_reader(location) as (con, query):
        return con.sql(query).df()


def iter_table(source: str | Path, chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """Read a lead table in chunks of at most ``chunk_rows`` rows, with flat memory.

    Same type rules as :func:`read_table`, applied chunk by chunk: for CSV and JSONL a
    chunk's column types are inferred from that chunk alone (a column that is empty in one
    chunk may come back as ``object`` there). Chunks are numbered on from one another, so
    ``pd.concat(iter_table(src))`` has the same rows and index as ``read_table(src)``.

    Args:
        source: As for :func:`read_table`.
        chunk_rows: The most rows in one chunk.

    Yields:
        Consecutive slices of the table, in stored order.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive number of rows; got {chunk_rows}")
    location = _existing(source)
    start = 0
    for chunk in _raw_chunks(location, chunk_rows):
        chunk.index = pd.RangeIndex(start, start + len(chunk))
        start += len(chunk)
        yield chunk


def _raw_chunks(location: _Location, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if location.format == "csv":
        with pd.read_csv(location.path, chunksize=chunk_rows, **_csv_options(location.path)) as reader:
            yield from reader
    elif location.format == "parquet":
        with pq.ParquetFile(location.path) as parquet:
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
    elif location.format == "jsonl":
        with pd.read_json(location.path, chunksize=chunk_rows, **_json_options()) as reader:
            yield from reader
    else:
        with _duckdb_reader(location) as (con, query):
            for batch in con.sql(query).to_arrow_reader(chunk_rows):
                yield batch.to_pandas()


def write_table(table: pd.DataFrame, destination: str | Path) -> Path:
    """Write a lead table atomically; the index is not written.

    Files are written to a temporary file next to ``destination`` and renamed onto it, so
    a failed write leaves the old file as it was. A DuckDB table is replaced inside one
    transaction (``CREATE OR REPLACE TABLE``), so a failed write leaves the old table and
    the database's other tables untouched.

    Args:
        table: The leads.
        destination: A path whose suffix names the format; for DuckDB
            ``file.duckdb::table`` (table ``leads`` when left out).

    Returns:
        The path of the file written (for DuckDB, the database file).

    Example:
        >>> write_table(leads, "out/leads.parquet")  # doctest: +SKIP
        PosixPath('out/leads.parquet')
    """
    location = _locate(destination)
    if location.format == "duckdb":
        _write_duckdb(table, location)
        return location.path
    with atomic_path(location.path) as tmp:
        if location.format == "csv":
            table.to_csv(tmp, index=False)
        elif location.format == "parquet":
            pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
        else:
            _write_jsonl(table, tmp)
    return location.path


def _write_jsonl(table: pd.DataFrame, target: str | Path | IO[str]) -> None:
    table.to_json(
        target,
        orient="records",
        lines=True,
        date_format="iso",
        date_unit=_JSON_DATE_UNIT,
        force_ascii=False,
        index=False,
    )


def _write_duckdb(table: pd.DataFrame, location: _Location) -> None:
    assert location.table is not None
    # Through Arrow, as for Parquet: a column mixing numbers and words is refused, not stringified.
    incoming = pa.Table.from_pandas(table, preserve_index=False)
    location.path.parent.mkdir(parents=True, exist_ok=True)
    view = "_leadrank_incoming"
    with duckdb.connect(str(location.path)) as con:
        con.register(view, incoming)
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE OR REPLACE TABLE {_quote(location.table)} AS SELECT * FROM {view}")
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        finally:
            con.unregister(view)


class ChunkedWriter:
    """Stream chunks of one table into a CSV, Parquet or JSONL file, atomically.

    Chunks go to a temporary file next to ``destination``, which is renamed onto it when
    the ``with`` block ends without an error; on an error the temporary file is removed
    and ``destination`` is left as it was. Every chunk must have the first chunk's columns;
    Parquet also holds later chunks to the first chunk's column types. Write at least one
    chunk (an empty DataFrame with the right columns will do) so the file has a header or
    schema.

    Example:
        >>> with ChunkedWriter("scores.parquet") as out:  # doctest: +SKIP
        ...     for chunk in iter_table("leads.csv", chunk_rows=50_000):
        ...         out.write(score(chunk))
    """

    def __init__(self, destination: str | Path) -> None:
        self.destination = Path(destination)
        self._format = _locate(destination).format
        self._stack: contextlib.ExitStack | None = None
        self._tmp: Path | None = None
        self._columns: list[Any] | None = None
        self._handle: IO[str] | None = None
        self._parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> Self:
        if self._format == "duckdb":
            raise ValueError(
                f"{self.destination}: ChunkedWriter writes .csv, .parquet/.pq and .jsonl/.ndjson files; "
                "for DuckDB collect the chunks and call write_table"
            )
        with contextlib.ExitStack() as stack:
            self._tmp = stack.enter_context(atomic_path(self.destination))
            stack.push(self._finish)  # runs before atomic_path renames (or removes) the file
            self._stack = stack.pop_all()
        return self

    def write(self, chunk: pd.DataFrame) -> None:
        """Append ``chunk`` (its index is not written)."""
        if self._stack is None or self._tmp is None:
            raise RuntimeError("ChunkedWriter.write called outside its 'with' block")
        columns = list(chunk.columns)
        if self._columns is None:
            self._columns = columns
        elif columns != self._columns:
            raise ValueError(f"{self.destination}: chunk has columns {columns}; the first chunk had {self._columns}")
        if self._format == "parquet":
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, pa.Schema.from_pandas(chunk, preserve_index=False))
            self._parquet.write_table(pa.Table.from_pandas(chunk, schema=self._parquet.schema, preserve_index=False))
            return
        first = self._handle is None
        if self._handle is None:
            self._handle = self._tmp.open("w", encoding="utf-8", newline="")
        if self._format == "csv":
            chunk.to_csv(self._handle, index=False, header=first)
        elif len(chunk):  # pandas writes an empty frame as a blank line, which is not JSONL
            _write_jsonl(chunk, self._handle)

    def _finish(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._handle is not None:
            self._handle.close()
        if exc_type is None and self._columns is None:
            raise ValueError(
                f"{self.destination}: no chunk was written, so the file would have no columns; "
                "write at least one chunk (an empty DataFrame with the output columns will do)"
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return stack.__exit__(exc_type, exc, tb)
