"""git.config_backup against real repositories in tmp dirs, with a bare repository as the remote."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions.registry import registry
from runbook.actions.spec import Effect, StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
    pytest.mark.timeout(60),
]

# No global/system git config may leak in (identity, hooks, default branch): tests see only what they set.
ISOLATED = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ISOLATED.items():
        monkeypatch.setenv(key, value)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(tmp_path: Path, *, remote: bool = True, identity: bool = False) -> tuple[Path, Path | None]:
    repo = tmp_path / "config"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    if identity:
        git(repo, "config", "user.name", "Ops Person")
        git(repo, "config", "user.email", "ops@example.com")
    (repo / "pipeline.yaml").write_text("workers: 4\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=seed", "-c", "user.email=seed@example.com", "commit", "-q", "-m", "initial")
    bare = None
    if remote:
        bare = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "push", "-q", "origin", "main")
    return repo, bare


def run(
    tmp_path: Path, stores: dict[str, Any] | None = None, **params: Any
) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    ctx = StepContext(
        incident_id="t",
        step_id="s",
        mode="live",
        environment=Environment(name="sandbox", sandbox=True, stores=stores or {}),
        workdir=tmp_path,
        log=lines.append,
    )
    action = registry()["git.config_backup"]
    return action.run(ctx, action.Params(**params)), lines


def test_contract() -> None:
    action = registry()["git.config_backup"]
    assert action.effect == Effect.MUTATING
    p = action.Params(repo="/etc/pipeline", remote="origin")
    assert action.target(p) == "/etc/pipeline"
    assert "git branch backup/<YYYYmmdd_HHMMSS> HEAD; git push origin" in action.describe(p)
    with pytest.raises(ValidationError):
        action.Params(branch_prefix="bad..prefix/")
    with pytest.raises(ValidationError):
        action.Params(unknown=1)


def test_commit_branch_and_push(tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path)
    assert bare is not None
    (repo / "pipeline.yaml").write_text("workers: 8\n")
    (repo / "new.env").write_text("REGION=europe-west1\n")
    (repo / "gone.txt").write_text("x")  # created and committed below, then deleted
    git(repo, "add", "gone.txt")
    git(repo, "-c", "user.name=seed", "-c", "user.email=seed@example.com", "commit", "-q", "-m", "add gone")
    (repo / "gone.txt").unlink()

    out, lines = run(tmp_path, repo=str(repo))
    assert out["changed"] is True and out["pushed"] is True and out["remote"] == "origin"
    assert re.fullmatch(r"backup/\d{8}_\d{6}", out["branch"])
    assert out["commit"] == git(repo, "rev-parse", "HEAD")
    # The working branch did not move to the backup branch (the seed's checkout -b would have).
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    message = git(repo, "log", "-1", "--format=%s|%an <%ae>")
    assert re.fullmatch(
        r"Automated backup: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\|runbook <runbook@localhost>", message
    )
    assert git(repo, "status", "--porcelain") == ""  # additions, changes and the deletion are all committed
    assert git(repo, "show", "--name-status", "--format=", "HEAD").split("\n") == [
        "D\tgone.txt",
        "A\tnew.env",
        "M\tpipeline.yaml",
    ]
    # Both refs are on the remote, at the backup commit.
    assert git(bare, "rev-parse", "refs/heads/main") == out["commit"]
    assert git(bare, "rev-parse", f"refs/heads/{out['branch']}") == out["commit"]
    assert any("no git identity configured" in line for line in lines)


def test_no_changes_still_gets_a_dated_branch(tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path, identity=True)
    assert bare is not None
    head = git(repo, "rev-parse", "HEAD")
    first, lines = run(tmp_path, repo=str(repo))
    assert first["changed"] is False and first["commit"] == head and first["pushed"] is True
    assert "no changes to commit" in lines
    assert git(repo, "rev-list", "--count", "HEAD") == "1"  # no empty commit
    second, _ = run(tmp_path, repo=str(repo))  # often within the same second: a distinct branch name
    assert re.fullmatch(r"backup/\d{8}_\d{6}(_\d+)?", second["branch"]) and second["branch"] != first["branch"]
    if second["branch"][:22] == first["branch"][:22]:  # same second: the collision suffix
        assert second["branch"] == first["branch"] + "_2"
    assert git(bare, "rev-parse", f"refs/heads/{second['branch']}") == head

    none, _ = run(tmp_path, repo=str(repo), branch_if_unchanged=False)
    assert none["branch"] == "" and none["changed"] is False

    (repo / "pipeline.yaml").write_text("workers: 2\n")
    changed, _ = run(tmp_path, repo=str(repo))
    assert changed["changed"] is True
    assert git(repo, "log", "-1", "--format=%an") == "Ops Person"  # a configured identity is kept


def test_no_remote_and_repo_from_the_git_store(tmp_path: Path) -> None:
    repo, _ = make_repo(tmp_path, remote=False)
    (repo / "pipeline.yaml").write_text("workers: 1\n")
    out, lines = run(tmp_path, stores={"git": {"repo": str(repo)}})
    assert out["changed"] is True and out["pushed"] is False and out["remote"] == ""
    assert "no remote configured: the backup stays in the local repository only" in lines
    assert git(repo, "rev-parse", out["branch"]) == out["commit"]
    with pytest.raises(ActionError) as err:
        run(tmp_path, repo=str(repo), remote="upstream")
    assert str(err.value) == (
        f"Remote 'upstream' is not configured in {repo}: add it with `git remote add` or set push: false."
    )


def test_rejected_push_keeps_the_backup_branch(tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path, identity=True)
    assert bare is not None
    # Someone else pushed to main meanwhile.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare), str(other)], check=True)
    (other / "pipeline.yaml").write_text("workers: 16\n")
    git(other, "-c", "user.name=x", "-c", "user.email=x@example.com", "commit", "-qam", "theirs")
    git(other, "push", "-q", "origin", "main")
    (repo / "pipeline.yaml").write_text("workers: 6\n")
    with pytest.raises(ActionError) as err:
        run(tmp_path, repo=str(repo))
    branch = re.match(r"Pushed (backup/\S+) to origin", str(err.value))
    assert branch, str(err.value)
    assert str(err.value).endswith(f"the backup is safe on {branch.group(1)}; reconcile main by hand.")
    assert git(bare, "rev-parse", f"refs/heads/{branch.group(1)}") == git(repo, "rev-parse", "HEAD")


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ActionError) as err:
        run(tmp_path, repo=str(plain))
    assert str(err.value) == f"{plain} is not a git work tree: point repo at the configuration repository."
    with pytest.raises(
        ActionError, match=r"^Configuration repository not found: .*missing is not a directory\.$"
    ):
        run(tmp_path, repo=str(tmp_path / "missing"))
    with pytest.raises(ActionError, match="No configuration repository given"):
        run(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(ActionError, match="has no commits and nothing to commit"):
        run(tmp_path, repo=str(empty))
