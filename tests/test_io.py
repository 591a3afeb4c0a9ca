"""leadrank.data.io: formats, type rules, chunked reading, atomic writes."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from leadrank import _files
from leadrank._files import FileAccessError, write_text_atomic
from leadrank.data import io
from leadrank.data.io import ChunkedWriter, iter_table, read_table, refuse_overwriting_inputs, write_table
from leadrank.errors import ConfigurationError, DataContractError, EnvironmentProblem

FILE_SUFFIXES = [".csv", ".parquet", ".pq", ".jsonl", ".ndjson"]
ALL_SUFFIXES = [*FILE_SUFFIXES, ".duckdb"]  # ".db" (DuckDB too) is covered in TestDuckDB
TEXT_FORMATS = {".csv", ".jsonl", ".ndjson"}  # timestamps stored as ISO text


def leads(n: int = 7) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"{i:03d}" for i in range(n)],
            "as_of": pd.date_range("2024-01-01 09:30:00.123456", periods=n, freq="13h"),
            "days_since_contact": [float(i) if i % 3 else float("nan") for i in range(n)],
            "visits": list(range(n)),
            "city": ["上海", "Zürich", "Berlin", "Bergen", "Oslo", "Lima", "Rome"][:n] + ["x"] * max(0, n - 7),
            "dialogue": ["", "客户: 想试驾", "NA", 'agent: hi\ncustomer: "hello", ok', "", "null", "x"][:n] + ["y"] * max(0, n - 7),
            "label": [i % 2 for i in range(n)],
        }
    )


def as_written(table: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """What the format stores: text formats hold timestamps as ISO text."""
    if suffix in TEXT_FORMATS:
        table = table.assign(as_of=pd.to_datetime(table["as_of"], format="ISO8601"))
    return table


class TestRoundTrip:
    @pytest.mark.parametrize("suffix", ALL_SUFFIXES)
    def test_values_survive(self, tmp_path: Path, suffix: str) -> None:
        original = leads()
        path = write_table(original, tmp_path / f"leads{suffix}")
        assert path == tmp_path / f"leads{suffix}"
        back = read_table(path)
        pd.testing.assert_frame_equal(as_written(back, suffix), original, check_dtype=False)
        assert back["lead_id"].tolist() == ["000", "001", "002", "003", "004", "005", "006"]
        assert back["dialogue"].tolist() == original["dialogue"].tolist()  # '' and 'NA' kept as words

    @pytest.mark.parametrize("suffix", [".parquet", ".duckdb"])
    def test_timestamps_keep_their_type(self, tmp_path: Path, suffix: str) -> None:
        original = leads()
        back = read_table(write_table(original, tmp_path / f"leads{suffix}"))
        assert pd.api.types.is_datetime64_dtype(back["as_of"])
        assert back["as_of"].tolist() == original["as_of"].tolist()

    @pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
    def test_text_formats_store_iso_text(self, tmp_path: Path, suffix: str) -> None:
        back = read_table(write_table(leads(), tmp_path / f"leads{suffix}"))
        assert pd.api.types.is_string_dtype(back["as_of"])
        assert back["as_of"].iloc[0].startswith("2024-01-01")

    def test_index_is_not_written(self, tmp_path: Path) -> None:
        table = leads().set_index(pd.Index(list("abcdefg")))
        for suffix in ALL_SUFFIXES:
            back = read_table(write_table(table, tmp_path / f"indexed{suffix}"))
            assert list(back.columns) == list(table.columns), suffix
            assert isinstance(back.index, pd.RangeIndex), suffix


class TestCsvTypes:
    def test_leading_zeros_and_empty_dialogue(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.csv"
        path.write_text("lead_id,as_of,visits,dialogue\n007,2024-01-01,1,\n0042,2024-01-02,,hello\n", encoding="utf-8")
        back = read_table(path)
        assert back["lead_id"].tolist() == ["007", "0042"]
        assert back["dialogue"].tolist() == ["", "hello"]
        assert pd.isna(back["visits"].iloc[1])  # other columns: empty still means missing

    def test_word_in_numeric_column_is_not_coerced(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.csv"
        path.write_text("lead_id,visits\na,1\nb,three\nc,2\n", encoding="utf-8")
        back = read_table(path)
        assert not pd.api.types.is_numeric_dtype(back["visits"])
        assert back["visits"].tolist() == ["1", "three", "2"]

    def test_numeric_id_is_kept_as_stored_outside_csv(self, tmp_path: Path) -> None:
        table = pd.DataFrame({"lead_id": [7, 8], "as_of": pd.to_datetime(["2024-01-01", "2024-01-02"])})
        back = read_table(write_table(table, tmp_path / "leads.parquet"))
        assert pd.api.types.is_integer_dtype(back["lead_id"])  # the validator reports it, io does not fix it

    def test_jsonl_string_id_is_not_parsed_as_number(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.jsonl"
        path.write_text('{"lead_id": "007", "visits": 1}\n{"lead_id": "010", "visits": 2}\n', encoding="utf-8")
        assert read_table(path)["lead_id"].tolist() == ["007", "010"]


class TestDuckDB:
    def test_named_table_and_default_table(self, tmp_path: Path) -> None:
        db = tmp_path / "crm.duckdb"
        first, second = leads(3), leads(5)
        write_table(first, db)  # table 'leads'
        write_table(second, f"{db}::snapshot_2024")
        assert read_table(f"{db}::leads")["lead_id"].tolist() == first["lead_id"].tolist()
        assert read_table(db)["lead_id"].tolist() == first["lead_id"].tolist()
        assert len(read_table(f"{db}::snapshot_2024")) == 5

    def test_replace_keeps_other_tables(self, tmp_path: Path) -> None:
        db = tmp_path / "crm.db"
        write_table(leads(3), f"{db}::a")
        write_table(leads(4), f"{db}::b")
        write_table(leads(2), f"{db}::a")
        assert len(read_table(f"{db}::a")) == 2
        assert len(read_table(f"{db}::b")) == 4

    def test_missing_table_names_the_others(self, tmp_path: Path) -> None:
        db = tmp_path / "crm.duckdb"
        write_table(leads(2), f"{db}::snapshot")
        with pytest.raises(ValueError, match=r"no table 'leads'; the database has \['snapshot'\]"):
            read_table(db)

    def test_failed_write_keeps_old_table(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        db = tmp_path / "crm.duckdb"
        write_table(leads(3), db)

        class CrashBeforeCommit:
            """A connection that dies after CREATE OR REPLACE ran, before COMMIT."""

            def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
                self._con = con

            def __enter__(self) -> CrashBeforeCommit:
                return self

            def __exit__(self, *exc: object) -> None:
                self._con.close()

            def execute(self, sql: str) -> object:
                if sql == "COMMIT":
                    raise RuntimeError("power cut")
                return self._con.execute(sql)

            def __getattr__(self, name: str) -> object:
                return getattr(self._con, name)

        real_connect = duckdb.connect
        monkeypatch.setattr(io.duckdb, "connect", lambda *a, **k: CrashBeforeCommit(real_connect(*a, **k)))
        with pytest.raises(RuntimeError, match="power cut"):
            write_table(leads(6), db)
        monkeypatch.undo()
        assert read_table(db)["lead_id"].tolist() == ["000", "001", "002"]


class TestChunkedReading:
    @pytest.mark.parametrize("suffix", ALL_SUFFIXES)
    def test_chunks_add_up_to_the_table(self, tmp_path: Path, suffix: str) -> None:
        path = write_table(leads(23), tmp_path / f"leads{suffix}")
        chunks = list(iter_table(path, chunk_rows=5))
        assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
        pd.testing.assert_frame_equal(pd.concat(chunks), read_table(path))

    def test_duckdb_named_table(self, tmp_path: Path) -> None:
        source = f"{tmp_path / 'crm.duckdb'}::t"
        write_table(leads(9), source)
        pd.testing.assert_frame_equal(pd.concat(iter_table(source, chunk_rows=4)), read_table(source))

    def test_chunk_rows_must_be_positive(self, tmp_path: Path) -> None:
        path = write_table(leads(2), tmp_path / "leads.csv")
        with pytest.raises(ValueError, match="chunk_rows must be a positive number of rows; got 0"):
            next(iter_table(path, chunk_rows=0))


class TestAtomicWrites:
    @pytest.mark.parametrize("suffix", FILE_SUFFIXES)
    def test_failed_write_leaves_destination_unchanged(self, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        destination = tmp_path / f"leads{suffix}"
        write_table(leads(3), destination)
        before = destination.read_bytes()

        def half_write_then_crash(self: pd.DataFrame, target: object, *args: object, **kwargs: object) -> None:
            Path(str(target)).write_text("half a fi", encoding="utf-8")
            raise OSError("disk full")

        monkeypatch.setattr(pd.DataFrame, "to_csv", half_write_then_crash)
        monkeypatch.setattr(io, "_write_jsonl", half_write_then_crash)
        monkeypatch.setattr(io.pq, "write_table", lambda table, where, **kw: half_write_then_crash(table, where))
        with pytest.raises(OSError, match="disk full"):
            write_table(leads(6), destination)
        assert destination.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == [destination.name]

    def test_written_files_get_the_usual_permissions(self, tmp_path: Path) -> None:
        # the temporary file is created private (0600); the result must be readable as with open()
        old = os.umask(0o022)
        try:
            destination = write_table(leads(2), tmp_path / "leads.csv")
        finally:
            os.umask(old)
        assert destination.stat().st_mode & 0o777 == 0o644

    @pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
    def test_chunked_writer_streams_and_renames(self, tmp_path: Path, suffix: str) -> None:
        table = leads(10)
        destination = tmp_path / f"scores{suffix}"
        with ChunkedWriter(destination) as out:
            for start in range(0, 10, 4):
                out.write(table.iloc[start : start + 4])
            out.write(table.iloc[:0])  # an empty chunk adds nothing
            assert not destination.exists()
        pd.testing.assert_frame_equal(as_written(read_table(destination), suffix), table, check_dtype=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [destination.name]

    @pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
    def test_chunked_writer_error_keeps_old_file(self, tmp_path: Path, suffix: str) -> None:
        destination = tmp_path / f"scores{suffix}"
        write_table(leads(2), destination)
        before = destination.read_bytes()
        with pytest.raises(RuntimeError, match="scoring failed"), ChunkedWriter(destination) as out:
            out.write(leads(4))
            raise RuntimeError("scoring failed")
        assert destination.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == [destination.name]

    def test_chunked_writer_refuses_other_columns(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"chunk has columns \['lead_id'\]; the first chunk had"):
            with ChunkedWriter(tmp_path / "scores.csv") as out:
                out.write(leads(2))
                out.write(leads(2)[["lead_id"]])
        assert list(tmp_path.iterdir()) == []

    def test_chunked_writer_needs_a_chunk(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="no chunk was written"), ChunkedWriter(tmp_path / "scores.parquet"):
            pass
        assert list(tmp_path.iterdir()) == []


class TestErrors:
    def test_unknown_suffix_lists_supported(self, tmp_path: Path) -> None:
        expected = r"unsupported file type '\.xlsx'; " r"expected one of \.csv, \.parquet, \.pq, \.jsonl, \.ndjson, \.duckdb, \.db"
        with pytest.raises(ValueError, match=expected):
            read_table(tmp_path / "leads.xlsx")
        with pytest.raises(ValueError, match=expected):
            write_table(leads(1), tmp_path / "leads.xlsx")
        assert list(tmp_path.iterdir()) == []

    def test_table_name_only_for_duckdb(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"'::t' names a table inside a DuckDB file"):
            read_table(f"{tmp_path / 'leads.csv'}::t")

    def test_empty_table_name(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="empty table name after '::'"):
            read_table(f"{tmp_path / 'crm.duckdb'}::")

    @pytest.mark.parametrize("suffix", ALL_SUFFIXES)
    def test_missing_file_names_the_path(self, tmp_path: Path, suffix: str) -> None:
        missing = tmp_path / f"nope{suffix}"
        with pytest.raises(FileNotFoundError, match="nope"):
            read_table(missing)
        with pytest.raises(FileNotFoundError, match="nope"):
            next(iter_table(missing))
        assert not missing.exists()  # DuckDB must not create an empty database while reading


# --------------------------------------------------------------------------- hostile input


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class TestEncodings:
    @pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
    def test_latin1_byte_names_the_line_and_the_fix(self, tmp_path: Path, suffix: str) -> None:
        csv_rows = ["lead_id,city", "L1,Oslo", "L2,Zürich"]
        jsonl_rows = ['{"lead_id": "L1", "city": "Oslo"}', '{"lead_id": "L2", "city": "Zürich"}']
        rows = csv_rows if suffix == ".csv" else jsonl_rows
        path = write_bytes(tmp_path / f"leads{suffix}", "\n".join(rows).encode("latin-1") + b"\n")
        line = 3 if suffix == ".csv" else 2
        expected = (
            rf"leads{suffix}, line {line}: byte 0xfc is not valid utf-8; it looks like latin-1/cp1252: "
            r"pass encoding='latin-1'; on the command line --encoding latin-1"
        )
        with pytest.raises(DataContractError, match=expected):
            read_table(path)
        with pytest.raises(DataContractError, match=expected):
            list(iter_table(path, chunk_rows=1))
        assert read_table(path, encoding="latin-1")["city"].tolist() == ["Oslo", "Zürich"]
        assert pd.concat(iter_table(path, encoding="latin-1"))["city"].tolist() == ["Oslo", "Zürich"]

    def test_bad_byte_far_into_a_chunked_file(self, tmp_path: Path) -> None:
        text = "lead_id,note\n" + "".join(f"L{i},ok\n" for i in range(40)) + "L40,\u20ac 5\n"
        path = write_bytes(tmp_path / "leads.csv", text.encode("cp1252"))
        with pytest.raises(DataContractError, match=r"line 42: byte 0x80 .* pass encoding='cp1252'; on the command line --encoding cp1252"):
            list(iter_table(path, chunk_rows=8))
        assert read_table(path, encoding="cp1252")["note"].iloc[-1] == "€ 5"

    def test_utf16_file_is_recognised(self, tmp_path: Path) -> None:
        # Excel's "Unicode text": UTF-16 with a byte order mark, tab-separated
        path = write_bytes(tmp_path / "leads.csv", "lead_id\tcity\r\n007\tZürich\r\n".encode("utf-16"))
        with pytest.raises(DataContractError, match=r"line 1: byte 0xff .* it looks like UTF-16: pass encoding='utf-16'"):
            read_table(path)
        back = read_table(path, encoding="utf-16")
        assert back.to_dict("list") == {"lead_id": ["007"], "city": ["Zürich"]}

    def test_bom_and_crlf_are_accepted_in_csv(self, tmp_path: Path) -> None:
        path = write_bytes(tmp_path / "leads.csv", b"\xef\xbb\xbflead_id,visits,dialogue\r\n007,1,hi\r\n008,2,\r\n")
        for back in (read_table(path), pd.concat(iter_table(path, chunk_rows=1))):
            assert list(back.columns) == ["lead_id", "visits", "dialogue"]
            assert back["lead_id"].tolist() == ["007", "008"]
            assert back["visits"].tolist() == [1, 2]
            assert back["dialogue"].tolist() == ["hi", ""]

    def test_bom_and_crlf_are_accepted_in_jsonl(self, tmp_path: Path) -> None:
        path = write_bytes(tmp_path / "leads.jsonl", b'\xef\xbb\xbf{"lead_id": "007", "visits": 1}\r\n{"lead_id": "008", "visits": 2}\r\n')
        for back in (read_table(path), pd.concat(iter_table(path, chunk_rows=1))):
            assert list(back.columns) == ["lead_id", "visits"]
            assert back["lead_id"].tolist() == ["007", "008"]

    def test_unknown_encoding(self, tmp_path: Path) -> None:
        path = write_table(leads(2), tmp_path / "leads.csv")
        with pytest.raises(ConfigurationError, match="unknown encoding 'klingon'"):
            read_table(path, encoding="klingon")


class TestBrokenText:
    def test_broken_jsonl_line_by_number_and_excerpt(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.jsonl"
        path.write_text('{"lead_id": "a"}\n\n{"lead_id": "b"}\n{"lead_id": "c", oops}\n{"lead_id": "d"}\n', encoding="utf-8")
        expected = r"leads\.jsonl, line 4: not valid JSON \(.*\): '\{\"lead_id\": \"c\", oops\}'; write one JSON object per line"
        with pytest.raises(DataContractError, match=expected):
            read_table(path)
        with pytest.raises(DataContractError, match=expected):
            list(iter_table(path, chunk_rows=2))

    def test_long_broken_line_is_cut(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.jsonl"
        path.write_text('{"lead_id": "a", "dialogue": "' + "x" * 500 + "\n", encoding="utf-8")
        with pytest.raises(DataContractError, match=r"line 1: .*xxx\.\.\.'; write") as caught:
            read_table(path)
        assert len(str(caught.value)) < 300

    @pytest.mark.parametrize("content", [b"", b"  \n\r\n\t\n", b"\xef\xbb\xbf"])
    @pytest.mark.parametrize(("suffix", "needs"), [(".csv", "a header row"), (".jsonl", "one JSON object per line")])
    def test_empty_file(self, tmp_path: Path, content: bytes, suffix: str, needs: str) -> None:
        path = write_bytes(tmp_path / f"leads{suffix}", content)
        expected = rf"leads{suffix} is empty: a lead table needs {needs}"
        with pytest.raises(DataContractError, match=expected):
            read_table(path)
        with pytest.raises(DataContractError, match=expected):
            next(iter_table(path))


class TestCsvDelimiter:
    @pytest.mark.parametrize("delimiter", [";", "\t", "|"])
    def test_delimiter_is_found_from_the_header(self, tmp_path: Path, delimiter: str) -> None:
        rows = [["lead_id", "visits", "city"], ["007", "1", "Zürich, CH"], ["008", "2", "Oslo"]]
        path = tmp_path / "leads.csv"
        path.write_text("".join(delimiter.join(row) + "\n" for row in rows), encoding="utf-8")
        for back in (read_table(path), pd.concat(iter_table(path, chunk_rows=1))):
            assert list(back.columns) == ["lead_id", "visits", "city"]
            assert back["lead_id"].tolist() == ["007", "008"]
            assert back["visits"].tolist() == [1, 2]
            assert back["city"].tolist() == ["Zürich, CH", "Oslo"]

    def test_quoted_names_do_not_count(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.csv"
        path.write_text('lead_id,"notes; free text",visits\n007,"a; b",1\n', encoding="utf-8")
        assert list(read_table(path).columns) == ["lead_id", "notes; free text", "visits"]

    def test_row_with_extra_fields_names_its_line(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.csv"
        path.write_text("lead_id,city\n007,Oslo\n008,Zürich, CH\n", encoding="utf-8")
        with pytest.raises(DataContractError, match=r"leads\.csv: .*Expected 2 fields in line 3, saw 3; quote the fields"):
            read_table(path)

    def test_header_in_one_column_holding_another_delimiter_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "leads.csv"
        path.write_text('"lead_id;visits"\n"007;1"\n', encoding="utf-8")
        expected = r"leads\.csv: the header row reads as one column 'lead_id;visits' with the delimiter found \(','\), yet it holds ';'"
        with pytest.raises(DataContractError, match=expected):
            read_table(path)


class TestFileAccess:
    def test_reading_a_folder(self, tmp_path: Path) -> None:
        (tmp_path / "leads.csv").mkdir()
        with pytest.raises(EnvironmentProblem, match=r"leads\.csv is a folder, not a file"):
            read_table(tmp_path / "leads.csv")

    @pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
    def test_unreadable_file(self, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write_table(leads(3), tmp_path / f"leads{suffix}")

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        # chmod 000 does not stop root: refuse where each format first opens the file
        expected = rf"cannot read {re.escape(str(path))}: Permission denied"
        with monkeypatch.context() as patch, pytest.raises(FileAccessError, match=expected) as caught:
            patch.setattr(Path, "open", denied)
            patch.setattr(pq, "read_table", denied)
            read_table(path)
        assert isinstance(caught.value, EnvironmentProblem) and isinstance(caught.value, OSError)

    def test_not_a_duckdb_database(self, tmp_path: Path) -> None:
        path = write_bytes(tmp_path / "crm.duckdb", b"lead_id,visits\n007,1\n" * 100)
        with pytest.raises(EnvironmentProblem, match=r"cannot read .*crm\.duckdb"):
            read_table(path)

    @pytest.mark.parametrize("suffix", ALL_SUFFIXES)
    def test_writing_under_a_regular_file(self, tmp_path: Path, suffix: str) -> None:
        blocker = write_bytes(tmp_path / "notes.txt", b"a file, not a folder")
        destination = blocker / f"leads{suffix}"
        with pytest.raises(EnvironmentProblem, match=rf"cannot write {re.escape(str(destination))}: .*; choose a writable folder"):
            write_table(leads(2), destination)
        assert blocker.read_bytes() == b"a file, not a folder"

    @pytest.mark.parametrize("suffix", ALL_SUFFIXES)
    def test_writing_onto_a_folder(self, tmp_path: Path, suffix: str) -> None:
        folder = tmp_path / f"leads{suffix}"
        (folder / "inside").mkdir(parents=True)
        with pytest.raises(EnvironmentProblem, match=rf"cannot write {re.escape(str(folder))}: .*; choose a writable folder"):
            write_table(leads(2), folder)
        assert [p.name for p in tmp_path.iterdir()] == [folder.name]
        assert [p.name for p in folder.iterdir()] == ["inside"]

    @pytest.mark.parametrize("suffix", FILE_SUFFIXES)
    def test_disk_full_keeps_the_old_file(self, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        destination = write_table(leads(3), tmp_path / f"leads{suffix}")
        before = destination.read_bytes()

        def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
        monkeypatch.setattr(io, "_write_jsonl", disk_full)
        monkeypatch.setattr(io.pq, "write_table", disk_full)
        with pytest.raises(EnvironmentProblem, match=r"cannot write .*: No space left on device; choose a writable folder with free space"):
            write_table(leads(6), destination)
        assert destination.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == [destination.name]

    @pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
    def test_chunked_writer_disk_full_keeps_the_old_file(self, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        destination = write_table(leads(2), tmp_path / f"scores{suffix}")
        before = destination.read_bytes()

        def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(EnvironmentProblem, match=r"No space left on device; choose a writable folder"):
            with ChunkedWriter(destination) as out:
                out.write(leads(4))
                monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
                monkeypatch.setattr(io, "_write_jsonl", disk_full)
                monkeypatch.setattr(io.pq.ParquetWriter, "write_table", disk_full)
                out.write(leads(4))
        assert destination.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == [destination.name]

    def test_read_only_file_system(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def read_only(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(_files.tempfile, "mkstemp", read_only)
        with pytest.raises(EnvironmentProblem, match=r"cannot write .*report\.md: Read-only file system; choose a writable folder"):
            write_text_atomic(tmp_path / "report.md", "# hi\n")
        with pytest.raises(EnvironmentProblem, match=r"cannot write .*leads\.csv: Read-only file system"):
            write_table(leads(2), tmp_path / "leads.csv")
        assert list(tmp_path.iterdir()) == []


class TestFormulaInjection:
    HOSTILE = ['=HYPERLINK("http://x")', "+cmd|calc", "@SUM(1)", "-2+3", "\tx", "\rx", "L-5"]

    def table(self) -> pd.DataFrame:
        n = len(self.HOSTILE)
        return pd.DataFrame(
            {
                "lead_id": self.HOSTILE,
                "visits": [-1, 2, -3, 4, 5, 6, -7][:n],
                "days": [-1.5] * n,
                "mixed": pd.Series(["-5", -5, "ok", 1.5, None, "=1", 3], dtype=object)[:n],
            }
        )

    def check(self, path: Path, original: pd.DataFrame) -> None:
        back = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert back["lead_id"].tolist() == ["'" + v for v in self.HOSTILE[:-1]] + ["L-5"]
        assert back["visits"].tolist() == ["-1", "2", "-3", "4", "5", "6", "-7"]  # numbers untouched
        assert back["days"].tolist() == ["-1.5"] * 7
        assert back["mixed"].tolist() == ["'-5", "-5", "ok", "1.5", "", "'=1", "3"]  # text escaped, numbers not
        pd.testing.assert_frame_equal(original, self.table())  # the caller's table is not changed

    def test_write_table_csv(self, tmp_path: Path) -> None:
        original = self.table()
        self.check(write_table(original, tmp_path / "leads.csv"), original)

    def test_chunked_writer_csv(self, tmp_path: Path) -> None:
        original = self.table()
        with ChunkedWriter(tmp_path / "scores.csv") as out:
            out.write(original.iloc[:3])
            out.write(original.iloc[3:])
        self.check(tmp_path / "scores.csv", original)

    def test_line_breaks_inside_text_survive(self, tmp_path: Path) -> None:
        # a transcript with old Mac (CR) or Windows (CRLF) line breaks stays one field
        table = pd.DataFrame({"lead_id": ["a", "b", "c"], "dialogue": ["agent: hi\rcustomer: yo", "x\r\ny", "p\nq"]})
        path = write_table(table, tmp_path / "leads.csv")
        assert path.read_bytes().startswith(b"lead_id,dialogue\r\na,")
        for back in (read_table(path), pd.concat(iter_table(path, chunk_rows=1))):
            assert back["dialogue"].tolist() == table["dialogue"].tolist()

    def test_column_names_are_escaped_too(self, tmp_path: Path) -> None:
        path = write_table(pd.DataFrame({"lead_id": ["a"], "=cmd": [1]}), tmp_path / "leads.csv")
        assert path.read_text(encoding="utf-8").splitlines()[0] == "lead_id,'=cmd"

    @pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".duckdb"])
    def test_other_formats_keep_values(self, tmp_path: Path, suffix: str) -> None:
        table = pd.DataFrame({"lead_id": self.HOSTILE, "visits": range(len(self.HOSTILE))})
        back = read_table(write_table(table, tmp_path / f"leads{suffix}"))
        assert back["lead_id"].tolist() == self.HOSTILE


class TestOverwritingInputs:
    def test_same_file_is_refused(self, tmp_path: Path) -> None:
        source = write_table(leads(2), tmp_path / "leads.csv")
        named = re.escape(str(source))
        with pytest.raises(ConfigurationError, match=rf"the output {named} is the input {named}: .*choose another --out"):
            refuse_overwriting_inputs([tmp_path / "other.csv", source], [tmp_path / "spec.yaml", source])

    def test_same_file_by_another_name(self, tmp_path: Path) -> None:
        source = write_table(leads(2), tmp_path / "leads.parquet")
        (tmp_path / "sub").mkdir()
        (tmp_path / "link.parquet").symlink_to(source)
        os.link(source, tmp_path / "hard.parquet")
        for alias in (tmp_path / "sub" / ".." / "leads.parquet", tmp_path / "link.parquet", tmp_path / "hard.parquet"):
            with pytest.raises(ConfigurationError, match=rf"the output {re.escape(str(alias))} is the input {re.escape(str(source))}"):
                refuse_overwriting_inputs([alias], [source])

    def test_output_not_yet_there_through_a_symlinked_folder(self, tmp_path: Path) -> None:
        (tmp_path / "data").mkdir()
        (tmp_path / "alias").symlink_to(tmp_path / "data")
        with pytest.raises(ConfigurationError, match="is the input"):
            refuse_overwriting_inputs([tmp_path / "alias" / "new.csv"], [str(tmp_path / "data" / "new.csv")])

    def test_duckdb_tables(self, tmp_path: Path) -> None:
        db = tmp_path / "crm.duckdb"
        with pytest.raises(ConfigurationError, match="is the input"):
            refuse_overwriting_inputs([f"{db}::leads"], [db])  # 'leads' is the default table
        with pytest.raises(ConfigurationError, match="is the input"):
            refuse_overwriting_inputs([f"{db}::t"], [f"{tmp_path}/x/../crm.duckdb::t"])
        refuse_overwriting_inputs([f"{db}::scores"], [db])  # another table of the same file

    def test_different_files_pass(self, tmp_path: Path) -> None:
        source = write_table(leads(2), tmp_path / "leads.csv")
        write_table(leads(2), tmp_path / "copy.csv")
        refuse_overwriting_inputs([tmp_path / "copy.csv", tmp_path / "model", tmp_path / "leads.parquet"], [source, tmp_path / "model2"])

    def test_folders_and_other_paths_are_compared_too(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="is the input"):
            refuse_overwriting_inputs([tmp_path / "model"], [tmp_path / "model" / "."])


class TestMixedTypeColumns:
    @pytest.mark.parametrize("suffix", [".parquet", ".duckdb"])
    def test_mixed_column_is_named(self, tmp_path: Path, suffix: str) -> None:
        path = tmp_path / "leads.jsonl"
        path.write_text('{"lead_id": "a", "visits": 1}\n{"lead_id": "b", "visits": "three"}\n', encoding="utf-8")
        table = read_table(path)
        with pytest.raises(DataContractError, match=r"column 'visits' holds int, str values, .*write \.csv or \.jsonl instead"):
            write_table(table, tmp_path / f"valid{suffix}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["leads.jsonl"]
        back = read_table(write_table(table, tmp_path / "valid.jsonl"))  # JSONL keeps each value as it is
        assert back["visits"].tolist() == [1, "three"]

    def test_chunk_of_another_type_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(DataContractError, match=r"column 'visits' holds str values, .*of the first chunk's type, int64"):
            with ChunkedWriter(tmp_path / "scores.parquet") as out:
                out.write(pd.DataFrame({"lead_id": ["a"], "visits": [1]}))
                out.write(pd.DataFrame({"lead_id": ["b"], "visits": ["many"]}))
        assert list(tmp_path.iterdir()) == []
