"""Read and write lead tables: CSV, Parquet, JSONL and DuckDB.

The format follows the suffix of the path:

==========================  ===========================================================
suffix                      format
==========================  ===========================================================
``.csv``                    delimited text with a header row (``,`` ``;`` tab or ``|``)
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

CSV and JSONL are read as UTF-8 unless ``encoding=`` names another codec; a UTF-8 byte
order mark and Windows line ends (CRLF) are accepted. A CSV's delimiter is the one of
``,`` ``;`` tab ``|`` used most in its header row (``,`` when the header has none). A
file that cannot be read is refused with its line: a byte that is not valid in the
encoding (and the encoding the file looks like), a JSONL line that is not one JSON
object, an empty file.

Timestamps round-trip exactly through Parquet and DuckDB. CSV and JSONL store them as
ISO 8601 text and read that text back as text; :func:`leadrank.data.split.time_split`
parses it. A missing ``dialogue`` (NaN) is written to CSV as an empty field and so comes
back as ``''``. CSV is written with CRLF line ends (RFC 4180), so text holding a line
break of any kind (LF, CR, CRLF) is quoted and reads back whole.

CSV files are opened in spreadsheets, so every CSV written is defused against formula
injection (OWASP's rule): a text cell or column name that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is written with a leading ``'``. Numbers are written as
they are, but the rule holds for all text, so the string ``"-5"`` is written ``'-5`` (and
reads back so). Parquet, JSONL and DuckDB store every value unchanged. Parquet and DuckDB
hold one type per column: a column mixing, say, numbers and words is refused with its
name, never turned into text.

Every write is atomic: a reader sees the old file or the new one, never half of one. A
file that cannot be read or written (permissions, a folder in the way, a full disk) raises
:class:`leadrank._files.FileAccessError`, naming the path.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadrank._files import FileAccessError, atomic_path, cannot_read, cannot_write
from leadrank.config import ID_COLUMN
from leadrank.data.schema import TEXT_SOURCE
from leadrank.errors import ConfigurationError, DataContractError, EnvironmentProblem, LeadrankError

__all__ = ["ChunkedWriter", "MissingFileError", "iter_table", "read_table", "refuse_overwriting_inputs", "write_table"]

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
# The CSV delimiters recognised, each with its name in messages; the first is the default.
_DELIMITERS = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
# OWASP: a spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# RFC 4180 line ends: Python 3.11's csv writer quotes a field holding \r only when \r ends lines.
_CSV_LINE_END = "\r\n"
_EXCERPT_CHARS = 60


class MissingFileError(EnvironmentProblem, FileNotFoundError):
    """The table file to read does not exist."""


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
            raise ConfigurationError(
                f"{source}: empty table name after '{_TABLE_SEPARATOR}'; "
                f"write 'file.duckdb::table_name', or leave out '::' for table {_DEFAULT_DUCKDB_TABLE!r}"
            )
    path = Path(text)
    suffix = path.suffix.lower()
    fmt = _SUFFIXES.get(suffix)
    if fmt is None:
        supported = ", ".join(_SUFFIXES)
        raise ConfigurationError(
            f"{source}: unsupported file type {suffix or '(no suffix)'!r}; expected one of {supported} "
            f"(a DuckDB table is written 'file.duckdb::table_name')"
        )
    if fmt == "duckdb":
        return _Location(path, fmt, table or _DEFAULT_DUCKDB_TABLE)
    if table is not None:
        raise ConfigurationError(f"{source}: '::{table}' names a table inside a DuckDB file (.duckdb, .db); {suffix} files have none")
    return _Location(path, fmt)


def _existing(source: str | Path) -> _Location:
    location = _locate(source)
    if location.path.is_dir():
        raise FileAccessError(f"{location.path} is a folder, not a file; name the table file in it (reading {str(source)!r})")
    if not location.path.is_file():
        raise MissingFileError(f"{location.path}: no such file (reading {str(source)!r})")
    return location


def refuse_overwriting_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """Refuse outputs that would be written over an input.

    An output clashes with an input when both name the same file: after resolving symlinks
    and ``..``, or as the same file on disk (a hard link) where both exist. DuckDB
    locations clash only when file and table are both the same, so ``crm.duckdb::scores``
    may be written while ``crm.duckdb`` (table ``leads``) is read. Other paths (a model
    folder, a report) are compared as paths, and an output that is an existing folder
    holding an input clashes too (writing the folder replaces what is in it).

    Raises:
        ConfigurationError: An output is an input, or a folder that holds one; the message names both.
    """
    sources = list(inputs)
    for output in outputs:
        for source in sources:
            if _same_location(output, source):
                raise ConfigurationError(
                    f"the output {output} is the input {source}: writing it would destroy the input; choose another --out"
                )
            if _holds(output, source):
                raise ConfigurationError(
                    f"the output folder {output} holds the input {source}: writing the folder would replace it; choose another --out"
                )


def _holds(folder: str | Path, location: str | Path) -> bool:
    """Whether ``folder`` is an existing folder with ``location``'s file somewhere inside it."""
    outer, inner = _file_and_table(folder)[0].resolve(), _file_and_table(location)[0].resolve()
    return outer.is_dir() and outer in inner.parents


def _same_location(a: str | Path, b: str | Path) -> bool:
    (path_a, table_a), (path_b, table_b) = _file_and_table(a), _file_and_table(b)
    return table_a == table_b and _same_file(path_a, path_b)


def _file_and_table(location: str | Path) -> tuple[Path, str | None]:
    """The file ``location`` names and, for DuckDB, the table in it."""
    try:
        parsed = _locate(location)
    except ConfigurationError:  # not a table (a model folder, a report): the path as given
        return Path(location), None
    return parsed.path, parsed.table


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _codec(encoding: str) -> str:
    """The codec to read text in ``encoding`` with: UTF-8 also accepts a byte order mark."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigurationError(
            f"unknown encoding {encoding!r}; name a Python codec such as 'utf-8', 'latin-1', 'cp1252' or 'utf-16'"
        ) from None
    return "utf-8-sig" if name == "utf-8" else encoding


def _first_line(location: _Location, codec: str) -> str:
    """The first line of a text table that is not blank; an empty file breaks the contract."""
    with location.path.open(encoding=codec, newline="") as handle:
        for line in handle:
            if line.strip():
                return line
    needs = "a header row" if location.format == "csv" else "one JSON object per line"
    raise DataContractError(f"{location.path} is empty: a lead table needs {needs}")


def _delimiter(header: str) -> str:
    """The delimiter used most in ``header`` outside quoted names (``,`` when there is none)."""
    unquoted = re.sub(r'"[^"]*"', "", header)
    return max(_DELIMITERS, key=unquoted.count)


def _refuse_merged_header(path: Path, columns: list[Any], delimiter: str) -> None:
    """A header read as one column that holds another delimiter was not split as its writer meant."""
    if len(columns) != 1:
        return
    others = [d for d in _DELIMITERS if d != delimiter and d in str(columns[0])]
    if others:
        raise DataContractError(
            f"{path}: the header row reads as one column {columns[0]!r} with the delimiter found "
            f"({_DELIMITERS[delimiter]}), yet it holds {_DELIMITERS[others[0]]}; write the column names "
            f"unquoted, with one delimiter (',', ';', tab or '|') between them"
        )


def _csv_options(location: _Location, codec: str) -> dict[str, Any]:
    """``read_csv`` arguments: the delimiter, ids and dialogue as text, empty dialogue kept as ``''``."""
    delimiter = _delimiter(_first_line(location, codec))
    columns = list(pd.read_csv(location.path, nrows=0, sep=delimiter, encoding=codec).columns)
    _refuse_merged_header(location.path, columns, delimiter)
    options: dict[str, Any] = {
        "sep": delimiter,
        "encoding": codec,
        "dtype": {c: str for c in (ID_COLUMN, _DIALOGUE_COLUMN) if c in columns},
    }
    if _DIALOGUE_COLUMN in columns:
        options["keep_default_na"] = False
        options["na_values"] = {c: _CSV_NA_VALUES for c in columns if c != _DIALOGUE_COLUMN}
    return options


def _json_options(codec: str) -> dict[str, Any]:
    # dtype=False: keep JSON's own types ('007' stays a string, dates stay text).
    return {"lines": True, "orient": "records", "dtype": False, "precise_float": True, "encoding": codec}


@contextlib.contextmanager
def _read_errors(location: _Location, encoding: str, codec: str) -> Iterator[None]:
    """Turn a failed read into an error that names the file, the line and what to do."""
    try:
        yield
    except LeadrankError:
        raise
    except UnicodeDecodeError as exc:
        problem = _undecodable(location.path, encoding, codec)
        if problem is None:
            raise
        raise problem from exc
    except (OSError, duckdb.IOException) as exc:
        raise cannot_read(location.path, exc) from exc
    except pd.errors.ParserError as exc:  # pandas names the line: "Expected 3 fields in line 5, saw 4"
        raise DataContractError(
            f"{location.path}: {str(exc).strip()}; quote the fields that hold the delimiter, or remove the extra ones"
        ) from exc
    except ValueError as exc:
        problem = _broken_json_line(location.path, codec) if location.format == "jsonl" else None
        if problem is not None:
            raise problem from exc
        if location.format == "jsonl":  # valid JSON pandas cannot hold, e.g. an integer beyond 64 bits
            raise DataContractError(
                f"{location.path}: {exc}; a number there does not fit a 64-bit column: store it as text, or smaller"
            ) from exc
        raise


def _undecodable(path: Path, encoding: str, codec: str) -> DataContractError | None:
    """The first line of ``path`` that is not valid ``encoding``, as an error that names the byte and a fix."""
    decoder = codecs.getincrementaldecoder(codec)()
    number, line = 0, b""
    with path.open("rb") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                decoder.decode(line)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            looks_like, fix = _likely_encoding(line, number)
            return DataContractError(
                f"{path}, line {number}: byte 0x{exc.object[exc.start]:02x} is not valid {encoding}; "
                f"it looks like {looks_like}: pass encoding='{fix}'; on the command line --encoding {fix}"
            )
    return None


def _likely_encoding(line: bytes, number: int) -> tuple[str, str]:
    """What a line that failed to decode is probably written in: its name in words and the codec to pass."""
    if number == 1 and line.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16", "utf-16"
    if any(0x80 <= byte <= 0x9F for byte in line):  # cp1252's letters (€, curly quotes); C1 controls in latin-1
        with contextlib.suppress(UnicodeDecodeError):
            line.decode("cp1252")
            return "latin-1/cp1252", "cp1252"
    return "latin-1/cp1252", "latin-1"


def _broken_json_line(path: Path, codec: str) -> DataContractError | None:
    """The first line of a JSONL file that is not one JSON object, as an error with its number and an excerpt."""
    with path.open(encoding=codec, newline="\n") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                what = f"not valid JSON ({exc.msg})"
            else:
                if isinstance(value, dict):
                    continue
                what = "not a JSON object"
            return DataContractError(f"{path}, line {number}: {what}: {_excerpt(text)}; write one JSON object per line")
    return None


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "...")


@contextlib.contextmanager
def _duckdb_reader(location: _Location) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """An open read-only connection and the ``SELECT`` for the table; a missing table names the others."""
    assert location.table is not None
    with duckdb.connect(str(location.path), read_only=True) as con:
        tables = [row[0] for row in con.sql("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
        if location.table not in tables:
            raise ConfigurationError(
                f"{location.path}: no table {location.table!r}; the database has {tables or 'no tables'}. "
                f"Name one as '{location.path}::table_name'."
            )
        yield con, f"SELECT * FROM {_quote(location.table)}"


def read_table(source: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a whole lead table.

    Args:
        source: A path whose suffix names the format; for DuckDB ``file.duckdb::table``
            (table ``leads`` when left out).
        encoding: The text encoding of a CSV or JSONL file (any Python codec name); Parquet
            and DuckDB store their own.

    Returns:
        The table with a fresh ``RangeIndex``, types as stored (see the module docstring).

    Raises:
        MissingFileError: The file does not exist (a ``FileNotFoundError``).
        FileAccessError: The file cannot be read (a folder, permissions, not a DuckDB database).
        ConfigurationError: Unknown suffix or encoding, or the DuckDB table does not exist.
        DataContractError: An empty CSV or JSONL file, a byte not valid in ``encoding``, a
            JSONL line that is not a JSON object, a CSV row with more fields than the header,
            or a CSV header in one column that holds another delimiter; the message names the line.

    Example:
        >>> leads = read_table("crm/leads.duckdb::snapshot_2024")  # doctest: +SKIP
    """
    location = _existing(source)
    codec = _codec(encoding)
    with _read_errors(location, encoding, codec):
        if location.format == "csv":
            return _text_source(pd.read_csv(location.path, **_csv_options(location, codec)))
        if location.format == "parquet":
            return pq.read_table(location.path).to_pandas()
        if location.format == "jsonl":
            _first_line(location, codec)  # refuses an empty file
            return pd.read_json(location.path, **_json_options(codec))
        with _duckdb_reader(location) as (con, query):
            return con.sql(query).df()


def _text_source(table: pd.DataFrame) -> pd.DataFrame:
    """Mark a CSV table: its every cell arrived as text, so the contract reads numbers written as text."""
    table.attrs[TEXT_SOURCE] = True
    return table


def iter_table(source: str | Path, chunk_rows: int = 100_000, *, encoding: str = "utf-8") -> Iterator[pd.DataFrame]:
    """Read a lead table in chunks of at most ``chunk_rows`` rows, with flat memory.

    Same type rules and errors as :func:`read_table`, applied chunk by chunk: for CSV and
    JSONL a chunk's column types are inferred from that chunk alone (a column that is empty
    in one chunk may come back as ``object`` there). Chunks are numbered on from one
    another, so ``pd.concat(iter_table(src))`` has the same rows and index as ``read_table(src)``.

    Args:
        source: As for :func:`read_table`.
        chunk_rows: The most rows in one chunk.
        encoding: As for :func:`read_table`.

    Yields:
        Consecutive slices of the table, in stored order.
    """
    if chunk_rows < 1:
        raise ConfigurationError(f"chunk_rows must be a positive number of rows; got {chunk_rows}")
    location = _existing(source)
    codec = _codec(encoding)
    start = 0
    with _read_errors(location, encoding, codec):
        for chunk in _raw_chunks(location, chunk_rows, codec):
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk


def _raw_chunks(location: _Location, chunk_rows: int, codec: str) -> Iterator[pd.DataFrame]:
    if location.format == "csv":
        with pd.read_csv(location.path, chunksize=chunk_rows, **_csv_options(location, codec)) as reader:
            yield from map(_text_source, reader)
    elif location.format == "parquet":
        with pq.ParquetFile(location.path) as parquet:
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
    elif location.format == "jsonl":
        _first_line(location, codec)  # refuses an empty file
        with pd.read_json(location.path, chunksize=chunk_rows, **_json_options(codec)) as reader:
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
    the database's other tables untouched. CSV text is defused against formula injection
    (see the module docstring).

    Args:
        table: The leads.
        destination: A path whose suffix names the format; for DuckDB
            ``file.duckdb::table`` (table ``leads`` when left out).

    Returns:
        The path of the file written (for DuckDB, the database file).

    Raises:
        ConfigurationError: Unknown suffix.
        FileAccessError: The file cannot be written (permissions, a folder in the way, a full disk).
        DataContractError: A column Parquet or DuckDB cannot store as one type (named).

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
            _defuse_formulas(table).to_csv(tmp, index=False, lineterminator=_CSV_LINE_END)
        elif location.format == "parquet":
            pq.write_table(_to_arrow(table, location.path), tmp)
        else:
            _write_jsonl(table, tmp)
    return location.path


def _defuse_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells and column names a spreadsheet would not run as formulas."""
    safe = table.rename(columns=_defuse)
    for position, dtype in enumerate(safe.dtypes):
        if dtype == np.dtype(object) or isinstance(dtype, pd.StringDtype):
            safe.isetitem(position, safe.iloc[:, position].map(_defuse))
    return safe


def _defuse(value: object) -> object:
    """``value`` with a leading ``'`` when it is text that starts like a formula (OWASP's CSV injection rule)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _to_arrow(table: pd.DataFrame, destination: Path, schema: pa.Schema | None = None) -> pa.Table:
    """``table`` as Arrow (for ``schema``, when given); a column Arrow cannot hold as one type is named."""
    try:
        return pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _unstorable(table, destination, schema, exc) from exc


def _unstorable(table: pd.DataFrame, destination: Path, schema: pa.Schema | None, exc: Exception) -> DataContractError:
    """The error for a table Arrow refused: the first column that fails on its own, with its value types."""
    for position, name in enumerate(table.columns):
        column = table.iloc[:, position]
        wanted = None if schema is None else schema.field(str(name)).type
        try:
            pa.array(column, type=wanted, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as column_exc:
            kinds = ", ".join(sorted({type(v).__name__ for v in column.dropna()}))
            expected = "" if wanted is None else f" of the first chunk's type, {wanted}"
            return DataContractError(
                f"{destination}: column {name!r} holds {kinds} values, which {destination.suffix} cannot store "
                f"in one column{expected} ({column_exc}); make the column one type, or write .csv or .jsonl instead"
            )
    return DataContractError(f"{destination}: the table cannot be stored as {destination.suffix} ({exc}); write .csv or .jsonl instead")


def _write_jsonl(table: pd.DataFrame, target: str | Path | IO[str]) -> None:
    """One JSON object per row, every number as Python writes it (all its digits: pandas'
    ``to_json`` rounds floats to 10 decimals), timestamps in ISO 8601, missing values as null."""
    lines = "".join(
        json.dumps({str(k): _json_value(v) for k, v in record.items()}, ensure_ascii=False) + "\n"
        for record in table.to_dict(orient="records")
    )
    if isinstance(target, (str, Path)):
        Path(target).write_text(lines, encoding="utf-8")
    else:
        target.write(lines)


def _json_value(value: object) -> object:
    """A cell as a plain JSON value."""
    if isinstance(value, (pd.Timestamp, datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return value


def _write_duckdb(table: pd.DataFrame, location: _Location) -> None:
    assert location.table is not None
    # Through Arrow, as for Parquet: a column mixing numbers and words is refused, not stringified.
    incoming = _to_arrow(table, location.path)
    view = "_leadrank_incoming"
    try:
        location.path.parent.mkdir(parents=True, exist_ok=True)
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
    except (OSError, duckdb.IOException) as exc:
        raise cannot_write(location.path, exc) from exc


class ChunkedWriter:
    """Stream chunks of one table into a CSV, Parquet or JSONL file, atomically.

    Chunks go to a temporary file next to ``destination``, which is renamed onto it when
    the ``with`` block ends without an error; on an error the temporary file is removed
    and ``destination`` is left as it was. Every chunk must have the first chunk's columns;
    Parquet also holds later chunks to the first chunk's column types. Write at least one
    chunk (an empty DataFrame with the right columns will do) so the file has a header or
    schema. CSV text is defused against formula injection, as by :func:`write_table`.

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
            raise ConfigurationError(
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
            arrow = _to_arrow(chunk, self.destination, None if self._parquet is None else self._parquet.schema)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, arrow.schema)
            self._parquet.write_table(arrow)
            return
        first = self._handle is None
        if self._handle is None:
            self._handle = self._tmp.open("w", encoding="utf-8", newline="")
        if self._format == "csv":
            _defuse_formulas(chunk).to_csv(self._handle, index=False, header=first, lineterminator=_CSV_LINE_END)
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return stack.__exit__(exc_type, exc, tb)
