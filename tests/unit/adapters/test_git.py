import subprocess
from pathlib import Path

import pytest

from adapters.git import current_branch, default_branch, git_commit, git_diff


def test_git_commit_outside_a_repo_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    assert git_diff(tmp_path) == "" and current_branch(tmp_path) is None
    assert default_branch(tmp_path) is None


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "trunk")
    _git(tmp_path, "config", "user.email", "ci@example.invalid")
    _git(tmp_path, "config", "user.name", "ci")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "test.json").write_text("{}\n")
    (tmp_path / "dvc.lock").write_text("a\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "init")
    return tmp_path


def test_outputs_of_the_run_do_not_make_the_tree_dirty(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "metrics" / "test.json").write_text('{"auc": 0.9}\n')
    (repo / "dvc.lock").write_text("b\n")
    (repo / "untracked.py").write_text("")
    exclude = ["metrics/test.json", "dvc.lock"]
    assert git_commit(repo, exclude) == head and git_diff(repo, exclude) == ""
    assert git_commit(repo) == f"{head}-dirty"


def test_changed_code_is_dirty_and_its_diff_is_kept(repo: Path) -> None:
    (repo / "code.py").write_text("x = 2\n")
    (repo / "dvc.lock").write_text("b\n")
    assert git_commit(repo, ["dvc.lock"]).endswith("-dirty")
    diff = git_diff(repo, ["dvc.lock"])
    assert "-x = 1" in diff and "+x = 2" in diff and "dvc.lock" not in diff


def test_branches(repo: Path) -> None:
    assert current_branch(repo) == "trunk" and default_branch(repo) == "trunk"  # the only one
    _git(repo, "checkout", "-qb", "feature")
    assert current_branch(repo) == "feature" and default_branch(repo) is None
    _git(repo, "branch", "-q", "main", "trunk")
    assert default_branch(repo) == "main"
    _git(repo, "config", "init.defaultBranch", "trunk")
    assert default_branch(repo) == "trunk"
    _git(repo, "checkout", "-q", "--detach")
    assert current_branch(repo) is None
