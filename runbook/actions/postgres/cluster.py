"""A local PostgreSQL server that runbook starts and stops: the temporary point-in-time recovery cluster.

Server programs run as the store's ``run_as`` (``postgres`` when we are root: PostgreSQL refuses
to run as root), through ``runuser``; the files they use are handed to that user first.
"""

from __future__ import annotations

import os
import shlex
import tarfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from runbook.actions.spec import StepContext
from runbook.actions.support.poll import WaitCancelled, WaitTimeout, wait_until
from runbook.core.durations import format_duration
from runbook.core.errors import ActionError
from runbook.core.procs import pid_alive
from runbook.stores.postgres import PostgresSettings

from .common import run

PITR_POLL = 0.2
_PROGRESS_EVERY = 5.0  # seconds between "replaying WAL…" lines


def pitr_dir(st: PostgresSettings, given: str | None, what: str) -> Path:
    """The directory for base backups / recovered clusters: the step's, else the store's ``pitr_dir``."""
    value = given or st.pitr_dir
    if not value:
        raise ActionError(f"No directory for {what}: pass directory in the step or set pitr_dir in the postgres store.")
    return Path(value).absolute()


def is_root() -> bool:
    return os.geteuid() == 0


def server_user(st: PostgresSettings) -> str | None:
    """Whom server programs run as through ``runuser`` (None: as ourselves)."""
    return st.system_user() if is_root() else None


def data_version(data: Path) -> str | None:
    """The major version in a data directory's ``PG_VERSION`` (None when it has none)."""
    version = data / "PG_VERSION"
    return version.read_text().strip() if version.is_file() else None


def hand_over(path: Path, user: str | None, log: Callable[[str], None]) -> None:
    """As root, give ``path`` (recursively) to the system user ``user`` and make its ancestors traversable.

    PostgreSQL refuses to run as root, so a data directory we unpacked must belong to the server's
    user; ancestors only gain ``o+x`` (enter, not list) where that user could not enter them.
    """
    if not is_root() or not user or user == "root":
        return
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ActionError(f"System user {user!r} (run_as in the postgres store) does not exist.") from None
    uid, gid = entry.pw_uid, entry.pw_gid
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    for ancestor in path.resolve().parents:
        st = ancestor.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            os.chmod(ancestor, st.st_mode | 0o001)
            log(f"made {ancestor} traversable (o+x) for {user}")


def untar(archive: Path, dest: Path) -> None:
    """Unpack a base backup tar (gzip or not) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, '..' and links leaving dest.
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ActionError(f"Cannot unpack the base backup {archive}: {exc}.") from None


def newest_base_backup(parent: Path) -> Path:
    found = sorted((p for p in parent.glob("base_*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ActionError(f"No base backup (base_*) in {parent}: run postgres.base_backup first.")
    return found[-1]


# --- configuration ----------------------------------------------------------------------------------


def _conf_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _default_config_files(ctx: StepContext, data: Path) -> None:
    if not (data / "postgresql.conf").is_file():
        # e.g. Debian keeps postgresql.conf in /etc, outside the data directory.
        (data / "postgresql.conf").write_text("# written by runbook pitr_restore\n")
        ctx.log("the backup has no postgresql.conf: using defaults")
    if not (data / "pg_hba.conf").is_file():
        (data / "pg_hba.conf").write_text(
            "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
        )
        ctx.log("the backup has no pg_hba.conf: local peer, host scram-sha-256")


def configure_recovery(ctx: StepContext, data: Path, run_dir: Path, archive: Path, when: datetime, port: int) -> None:
    """Make ``data`` replay ``archive`` up to ``when`` and promote, as a private server on ``port``."""
    _default_config_files(ctx, data)
    settings = {
        "restore_command": _conf_string(f"cp {shlex.quote(str(archive))}/%f %p"),
        "recovery_target_time": _conf_string(when.isoformat(sep=" ")),
        "recovery_target_action": "'promote'",
        # A temporary copy must not archive into the source's WAL archive.
        "archive_mode": "'off'",
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": _conf_string(str(run_dir)),
        "hot_standby": "'on'",
    }
    conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
    with open(data / "postgresql.auto.conf", "a") as fh:
        fh.write(f"\n# --- runbook point-in-time recovery ---\n{conf}")
    (data / "recovery.signal").write_text("")
    for line in conf.splitlines():
        ctx.log(f"postgresql.auto.conf: {line}")


# --- the server -------------------------------------------------------------------------------------


def postmaster_alive(data: Path) -> bool:
    """Whether the server whose pid is in ``data/postmaster.pid`` is running."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return pid_alive(pid)


def pg_ctl_start(ctx: StepContext, st: PostgresSettings, data: Path, log_path: Path, wait: float) -> None:
    argv = [st.program("pg_ctl", data_version(data)), "-D", str(data), "-l", str(log_path),
            "-w", "-t", str(int(wait)), "start"]
    run(ctx, st, argv, what="pg_ctl start of the recovered cluster", preexec_user=server_user(st), cwd=data.parent)


def pg_ctl_stop(
    ctx: StepContext, st: PostgresSettings, data: Path, mode: str, timeout: float, quiet: bool = False
) -> None:
    argv = [st.program("pg_ctl", data_version(data)), "-D", str(data), "-m", mode,
            "-w", "-t", str(int(timeout)), "stop"]
    run(ctx, st, argv, what=f"pg_ctl stop of {data}", preexec_user=server_user(st), cwd=data.parent,
        log=(lambda _line: None) if quiet else None)


def _promoted(local: PostgresSettings, data: Path) -> bool:
    """One look: False while the server replays WAL (57P03 until consistent), True once promoted."""
    import psycopg

    if not postmaster_alive(data):
        raise ActionError(f"The recovered PostgreSQL server in {data} exited during recovery.")
    try:
        with psycopg.connect(**local.connect_kwargs(local.maintenance_database), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return bool(row and not row[0])
    except psycopg.Error:
        return False  # still starting or replaying


def wait_promoted(ctx: StepContext, local: PostgresSettings, data: Path, wait: float) -> None:
    """Until the recovered server has replayed up to its target and left recovery."""
    noted: list[float] = []

    def progress(promoted: bool, waited: float) -> None:
        if not promoted and (not noted or waited - noted[-1] > _PROGRESS_EVERY):
            ctx.log("replaying WAL…")
            noted.append(waited)

    try:
        wait_until(lambda: _promoted(local, data), bool, timeout=wait, every=PITR_POLL,
                   cancelled=ctx.cancelled, on_poll=progress)
    except WaitCancelled:
        raise ActionError("Point-in-time recovery was stopped by the operator.") from None
    except WaitTimeout:
        raise ActionError(f"Point-in-time recovery in {data} did not finish within {format_duration(wait)}.") from None


# --- its log ----------------------------------------------------------------------------------------


def _log_lines(log_path: Path) -> list[str]:
    try:
        return log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def log_fatal(log_path: Path) -> str:
    """The last FATAL/PANIC message of the server log ("" when none)."""
    fatal = [ln for ln in _log_lines(log_path) if "FATAL:" in ln or "PANIC:" in ln]
    if not fatal:
        return ""
    return fatal[-1].split(":", 3)[-1].strip() if "FATAL:" not in fatal[-1] else fatal[-1].split("FATAL:", 1)[1].strip()


def recovery_summary(log_path: Path) -> str:
    """What the server log says recovery stopped at ("" when it says nothing)."""
    lines = _log_lines(log_path)
    for key in ("recovery stopping", "last completed transaction was at log time"):
        hits = [ln for ln in lines if key in ln]
        if hits:
            return hits[-1].split("LOG:", 1)[-1].strip()
    return ""
