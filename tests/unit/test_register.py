import hashlib
from pathlib import Path

from tasks.register import CHALLENGER, CHAMPION, choose_alias, file_md5, git_commit


def test_first_version_serves_later_ones_wait() -> None:
    assert choose_alias(has_champion=False) == CHAMPION
    assert choose_alias(has_champion=True) == CHALLENGER


def test_file_md5_matches_plain_md5(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    assert file_md5(f) == hashlib.md5(b"abc" * 1000).hexdigest()


def test_git_commit_outside_a_repo_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
