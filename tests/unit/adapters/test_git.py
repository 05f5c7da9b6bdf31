from pathlib import Path

from adapters.git import git_commit


def test_git_commit_outside_a_repo_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
