"""Git configuration backup: the seed's ``backup_configuration.sh``, made safe to run unattended.

``git.config_backup`` in a configuration repository:

1. ``git add -A`` and, when that staged anything, ``git commit -m "Automated backup: <UTC time>"``
   (with a fixed ``runbook`` identity when the repository has none configured);
2. ``git branch backup/<YYYYmmdd_HHMMSS> <commit>`` — a dated restore point, created without
   switching the working branch (the seed's ``git checkout -b`` would leave the repository on the
   backup branch and the next backup would commit there);
3. ``git push <remote> <working branch> backup/<…>`` when a remote is configured (the ``remote``
   param, else the environment's git store ``remote``, else ``origin`` if it exists); skipped
   with a log line otherwise.

With nothing to commit, no commit is made but the dated branch is still created at ``HEAD``
(``branch_if_unchanged: false`` turns that off): a backup run always leaves a restore point named
for its time, so a later step can refer to ``{{ steps.X.outputs.branch }}`` whatever happened.

git never prompts: ``GIT_TERMINAL_PROMPT=0`` and ssh in batch mode make a push that needs a
password fail with one sentence instead of hanging a 3 a.m. run.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from pydantic import field_validator

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.actions.support.process import ProcessResult, run_process
from runbook.core.effect import Effect
from runbook.core.errors import ActionError
from runbook.core.timestamps import stamp, utc_now

IDENTITY = ("runbook", "runbook@localhost")
_BRANCH_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*/?$")


class ConfigBackupParams(ActionParams):
    repo: str | None = None
    """The configuration repository (default: the git store's repo)."""
    remote: str | None = None
    """Remote to push to (default: the git store's remote, else origin if it exists)."""
    push: bool = True
    """Push the working branch and the backup branch."""
    branch_prefix: str = "backup/"
    """Backup branches are <prefix><YYYYmmdd_HHMMSS>."""
    branch_if_unchanged: bool = True
    """Create the dated branch even when nothing changed."""
    message: str = "Automated backup"
    """Commit message; ': <UTC time>' is appended."""

    @field_validator("branch_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and (not _BRANCH_PREFIX.match(v) or ".." in v or v.endswith(".lock")):
            raise ValueError(f"branch_prefix {v!r} is not a valid git branch prefix (e.g. backup/)")
        return v

    @field_validator("message")
    @classmethod
    def _message(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise ValueError("message must not be empty")
        return v


class ConfigBackupOutputs(ActionOutputs):
    commit: str
    """The commit backed up (new or HEAD)."""
    branch: str
    """The backup branch, e.g. backup/20250101_030000 (empty when not created)."""
    pushed: bool
    """true when pushed to the remote."""
    changed: bool
    """true when there were changes to commit."""
    remote: str
    """The remote pushed to, or empty."""


class _Git:
    """Runs git in one repository through ``run_process`` (argv lists only, never a shell)."""

    def __init__(self, ctx: StepContext, repo: Path) -> None:
        self.ctx, self.repo = ctx, repo
        self.env = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        if "GIT_SSH_COMMAND" not in os.environ:
            self.env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
        self.ident: list[str] = []

    def __call__(self, *args: str, check: bool = True, quiet: bool = False) -> ProcessResult:
        log = (lambda _line: None) if quiet else self.ctx.log
        result = run_process(
            ["git", "-C", str(self.repo), *self.ident, *args],
            log=log,
            cancelled=self.ctx.cancelled,
            timeout=self.ctx.timeout,
            env=self.env,
            capture=True,
        )
        if check and not result.ok:
            raise ActionError(_failure(args[0], result))
        return result

    def out(self, *args: str) -> str:
        return (self(*args, quiet=True).captured or "").strip()

    def ok(self, *args: str) -> bool:
        return self(*args, check=False, quiet=True).exit_code == 0


def _failure(what: str, result: ProcessResult) -> str:
    if result.timed_out:
        return f"git {what} was stopped: it exceeded the step's timeout."
    if result.cancelled:
        return f"git {what} was stopped by the operator."
    last = next((line.strip() for line in reversed(result.tail) if line.strip()), "")
    last = last.removeprefix("fatal: ").removeprefix("error: ")
    return f"git {what} failed (exit {result.exit_code}): {last[:300] or 'no output'}."


def _describe(p: ConfigBackupParams) -> str:
    branch = f"{p.branch_prefix}<YYYYmmdd_HHMMSS>"
    push = f"; git push {p.remote or '<remote>'} <working branch> {branch}" if p.push else ""
    return (
        f"git -C {p.repo or '<git.repo>'} add -A; "
        f"git commit -m '{p.message}: <UTC time>' (if anything changed); "
        f"git branch {branch} HEAD{push}"
    )


def _repo(ctx: StepContext, params: ConfigBackupParams) -> Path:
    raw = params.repo or ctx.environment.stores.get("git", {}).get("repo")
    if not raw:
        raise ActionError("No configuration repository given: set repo in the step or in the git store.")
    repo = Path(raw).expanduser()
    if not repo.is_dir():
        raise ActionError(f"Configuration repository not found: {repo} is not a directory.")
    return repo


def _open(ctx: StepContext, params: ConfigBackupParams) -> _Git:
    """git in the configuration repository, with an identity to commit as."""
    repo = _repo(ctx, params)
    git = _Git(ctx, repo)
    inside = git("rev-parse", "--is-inside-work-tree", check=False, quiet=True)
    if not inside.ok or (inside.captured or "").strip() != "true":
        raise ActionError(f"{repo} is not a git work tree: point repo at the configuration repository.")
    if not (git.ok("config", "user.name") and git.ok("config", "user.email")):
        # No identity (a fresh server account): commit as runbook rather than fail at 3 a.m.
        git.ident = ["-c", f"user.name={IDENTITY[0]}", "-c", f"user.email={IDENTITY[1]}"]
        ctx.log(f"no git identity configured: committing as {IDENTITY[0]} <{IDENTITY[1]}>")
    return git


def _commit(ctx: StepContext, git: _Git, message: str, now: datetime) -> bool:
    """Commit everything (additions, changes, deletions); whether there was anything to commit."""
    git("add", "-A")
    has_head = git.ok("rev-parse", "--verify", "-q", "HEAD")
    changed = not git.ok("diff", "--cached", "--quiet")
    if changed:
        git("commit", "-q", "-m", f"{message}: {now:%Y-%m-%d %H:%M:%S} UTC")
    elif not has_head:
        raise ActionError(
            f"Repository {git.repo} has no commits and nothing to commit: there is nothing to back up."
        )
    else:
        ctx.log("no changes to commit")
    return changed


@action("git.config_backup", Effect.MUTATING,
        "Commit a configuration repository, create a dated backup branch and push both.",
        target=lambda p: p.repo or "<git.repo>", describe=_describe)
def config_backup(ctx: StepContext, params: ConfigBackupParams) -> ConfigBackupOutputs:
    git = _open(ctx, params)
    now = utc_now()
    changed = _commit(ctx, git, params.message, now)
    commit = git.out("rev-parse", "HEAD")
    current = git("symbolic-ref", "-q", "--short", "HEAD", check=False, quiet=True)
    working = (current.captured or "").strip() if current.ok else ""
    ctx.log(f"{'committed' if changed else 'HEAD is'} {commit[:12]}" + (f" on {working}" if working else ""))

    branch = ""
    if changed or params.branch_if_unchanged:
        branch = _branch(git, params.branch_prefix, now, commit)
        ctx.log(f"created branch {branch} at {commit[:12]}")

    remote = _remote(ctx, git, params)
    pushed = False
    if params.push and remote:
        pushed = _push(ctx, git, remote, working, branch)
    elif params.push:
        ctx.log("no remote configured: the backup stays in the local repository only")
    return ConfigBackupOutputs(
        commit=commit, branch=branch, pushed=pushed, changed=changed, remote=remote or ""
    )


def _branch(git: _Git, prefix: str, now: datetime, commit: str) -> str:
    base = f"{prefix}{stamp(now)}"
    name, n = base, 1
    while git.ok("rev-parse", "--verify", "-q", f"refs/heads/{name}"):
        n += 1  # two backups within one second: backup/20250101_030000_2
        name = f"{base}_{n}"
    git("branch", name, commit)
    return name


def _remote(ctx: StepContext, git: _Git, params: ConfigBackupParams) -> str | None:
    remotes = set(git.out("remote").split())
    wanted = params.remote or ctx.environment.stores.get("git", {}).get("remote")
    if wanted:
        if wanted not in remotes:
            raise ActionError(
                f"Remote {wanted!r} is not configured in {git.repo}: "
                "add it with `git remote add` or set push: false."
            )
        return str(wanted)
    return "origin" if "origin" in remotes else None


def _push(ctx: StepContext, git: _Git, remote: str, working: str, branch: str) -> bool:
    refs = [f"refs/heads/{b}:refs/heads/{b}" for b in (working, branch) if b]
    if not refs:
        ctx.log("detached HEAD and no backup branch: nothing to push")
        return False
    if not working:
        ctx.log("detached HEAD: pushing the backup branch only")
    result = git("push", "--porcelain", remote, *refs, check=False)
    if result.ok:
        ctx.log(f"pushed {' and '.join(b for b in (working, branch) if b)} to {remote}")
        return True
    if result.timed_out or result.cancelled:
        raise ActionError(_failure("push", result))
    rejected = [
        line.split("\t")[1].split(":")[-1].removeprefix("refs/heads/")
        for line in result.tail
        if line.startswith("!\t")
    ]
    if branch and rejected and branch not in rejected:
        raise ActionError(
            f"Pushed {branch} to {remote}, but {remote} rejected {', '.join(rejected)} (it has commits this "
            f"repository lacks): the backup is safe on {branch}; reconcile {', '.join(rejected)} by hand."
        )
    raise ActionError(_failure(f"push to {remote}", result))


SPECS = [config_backup]
