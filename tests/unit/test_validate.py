import pandas as pd
import pytest

from tasks.config import DataSettings
from tasks.errors import DataError
from tasks.validate import check_schema, summarise

BINARY = DataSettings()


def test_default_data_passes(credit: pd.DataFrame) -> None:
    kept = check_schema(credit, BINARY, 20, "credit")
    assert len(kept) == len(credit)


def test_missing_target_column(credit_sample: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="target column 'Status'.*not in the data"):
        check_schema(credit_sample.drop(columns="Status"), BINARY, 20, "f.csv")


def test_header_only(credit_sample: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="header but no rows"):
        check_schema(credit_sample.head(0), BINARY, 20, "f.csv")


def test_single_class(credit_sample: pd.DataFrame) -> None:
    one = credit_sample[credit_sample["Status"] == "good"]
    with pytest.raises(DataError, match="single class"):
        check_schema(one, BINARY, 20, "f.csv")


def test_positive_label_absent(credit_sample: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="positive label 'yes'"):
        check_schema(credit_sample, DataSettings(positive_label="yes"), 20, "f.csv")


def test_binary_with_three_levels(credit_sample: pd.DataFrame) -> None:
    df = credit_sample.copy()
    df.loc[:5, "Status"] = "maybe"
    with pytest.raises(DataError, match="3 levels.*multiclass"):
        check_schema(df, BINARY, 20, "f.csv")


def test_rows_without_target_are_counted_not_hidden(credit_sample: pd.DataFrame) -> None:
    df = credit_sample.copy()
    df.loc[:9, "Status"] = None
    kept = check_schema(df, BINARY, 20, "f.csv")
    report = summarise(df, kept, BINARY, "f.csv")
    assert report.raw_rows == report.kept_rows + report.missing_target_rows
    assert report.missing_target_rows == 10


def test_regression_target_must_be_numeric() -> None:
    df = pd.DataFrame({"x": range(30), "y": ["1.5"] * 29 + ["lots"]})
    with pytest.raises(DataError, match="non-numeric values: '1.5', 'lots'|non-numeric"):
        check_schema(df, DataSettings(target="y", task="regression"), 20, "f.csv")


def test_too_few_rows(credit_sample: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="only 10 rows"):
        check_schema(credit_sample.head(10), BINARY, 20, "f.csv")
