from pathlib import Path

import pandas as pd
import pytest

from core.io import atomic_path, read_json, write_json, write_parquet


def test_failed_write_leaves_previous_artifact_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "m.json"
    write_json({"v": 1}, dest)
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert read_json(dest) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_parquet_round_trip_keeps_types(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": pd.Series(["x", None], dtype="str"), "c": [0.5, None]})
    write_parquet(df, tmp_path / "d" / "f.parquet")
    back = pd.read_parquet(tmp_path / "d" / "f.parquet")
    pd.testing.assert_frame_equal(df, back)


def test_file_md5_matches_plain_md5(tmp_path: Path) -> None:
    import hashlib

    from core.io import file_md5

    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    assert file_md5(f) == hashlib.md5(b"abc" * 1000).hexdigest()


def test_atomic_dir_swaps_the_whole_folder_only_on_success(tmp_path: Path) -> None:
    from core.io import atomic_dir

    dest = tmp_path / "plots"
    dest.mkdir()
    (dest / "old.png").write_text("from an earlier run")
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "half.png").write_text("half")
        raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in dest.iterdir()) == ["old.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["plots"]  # no temp folder left behind
    with atomic_dir(dest) as tmp:
        (tmp / "roc.png").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["roc.png"]  # nothing of the old run
    assert [p.name for p in tmp_path.iterdir()] == ["plots"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path: Path, umask: int) -> None:
    import os
    import stat

    from core.io import atomic_dir, write_csv, write_text

    old = os.umask(umask)
    try:
        text = write_text("x", tmp_path / "reason.txt")
        csv = write_csv(pd.DataFrame({"a": [1]}), tmp_path / "p" / "predictions.csv")
        with atomic_dir(tmp_path / "plots") as tmp:
            (tmp / "roc.png").write_bytes(b"png")
        with (tmp_path / "plain.txt").open("w") as fh:  # what open() gives, for comparison
            fh.write("x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(text) == mode(csv) == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "plots") == 0o777 & ~umask


def test_a_full_disk_or_read_only_folder_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from core.errors import StorageError
    from core.io import atomic_dir

    def full(self, path, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    dest = tmp_path / "data" / "raw.parquet"
    with pytest.raises(StorageError) as err:
        write_parquet(pd.DataFrame({"a": [1]}), dest)
    assert str(err.value) == (
        f"cannot write {dest}: No space left on device [Errno 28]; "
        "the disk is full: free some space and run again"
    )
    assert list(dest.parent.iterdir()) == []  # no temp file left

    def read_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "mkdir", read_only)
    expected = "cannot write .*plots: Read-only file system"
    with pytest.raises(StorageError, match=expected), atomic_dir(tmp_path / "plots"):
        pass
