from pathlib import Path

import pandas as pd
import pytest

from tasks.io import atomic_path, read_json, write_json, write_parquet


def test_failed_write_leaves_previous_artifact_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "m.json"
    write_json({"v": 1}, dest)
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(dest) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_parquet_round_trip_keeps_types(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": pd.Series(["x", None], dtype="str"), "c": [0.5, None]})
    write_parquet(df, tmp_path / "d" / "f.parquet")
    back = pd.read_parquet(tmp_path / "d" / "f.parquet")
    pd.testing.assert_frame_equal(df, back)
