"""leadrank.data.io: formats, type rules, chunked reading, atomic writes."""

from __future__ import annotations

import os

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from leadrank.data import io
from leadrank.data.io import ChunkedWriter, iter_table, read_table, write_table

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
            "dialogue": ["", "客户: 想试驾", "NA", "agent: hi\ncustomer: \"hello\", ok", "", "null", "x"][:n]
            + ["y"] * max(0, n - 7),
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
    def test_failed_write_leaves_destination_unchanged(
        self, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        destination = tmp_path / f"leads{suffix}"
        write_table(leads(3), destination)
        before = destination.read_bytes()

        def half_write_then_crash(self: pd.DataFrame, target: object, *args: object, **kwargs: object) -> None:
            Path(str(target)).write_text("half a fi", encoding="utf-8")
            raise OSError("disk full")

        monkeypatch.setattr(pd.DataFrame, "to_csv", half_write_then_crash)
        monkeypatch.setattr(pd.DataFrame, "to_json", half_write_then_crash)
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
        expected = (
            r"unsupported file type '\.xlsx'; "
            r"expected one of \.csv, \.parquet, \.pq, \.jsonl, \.ndjson, \.duckdb, \.db"
        )
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
