"""postgres.* actions against a real PostgreSQL cluster (password auth, WAL archiving), no mocks."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions.registry import registry
from runbook.actions.spec import StepContext
from runbook.actions.support.poll import wait_until
from runbook.core.environment import Environment
from runbook.core.errors import ActionError

PG_BIN = Path("/usr/lib/postgresql")
pytestmark = pytest.mark.skipif(
    not any(PG_BIN.glob("*/bin/initdb")) or shutil.which("pg_dump") is None,
    reason="PostgreSQL server binaries are not installed",
)

PASSWORD_ENV = "RUNBOOK_TEST_PG_PASSWORD"
PASSWORD = "pw-" + secrets.token_hex(12)
WEIRD = 'we"ird name'

SCHEMA = """
CREATE TABLE datasets (
    id          serial PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    file_path   text NOT NULL,
    size_bytes  bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL
);
CREATE INDEX datasets_tenant ON datasets (tenant_id);
CREATE TABLE dataset_columns (
    id          serial PRIMARY KEY,
    dataset_id  integer NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    name        text NOT NULL,
    type        text NOT NULL
);
CREATE INDEX dataset_columns_dataset ON dataset_columns (dataset_id);
INSERT INTO datasets (tenant_id, name, file_path, size_bytes, created_at)
SELECT 'tenant-' || (g % 5), 'upload_' || g || '.csv', 'tenant-' || (g % 5) || '/' || g || '/data.csv',
       g * 40, timestamptz '2025-11-01 00:00:00+00' + g * interval '7 minutes'
FROM generate_series(1, 1500) g;
INSERT INTO dataset_columns (dataset_id, name, type)
SELECT d, 'col_' || c, (ARRAY['text', 'integer', 'numeric', 'boolean'])[1 + (d + c) % 4]
FROM generate_series(1, 1500) d, generate_series(1, 4) c;
"""
DATASETS = 1500
COLUMNS = 6000


# --- fixtures ---------------------------------------------------------------------------------


class Cluster:
    """The module's cluster plus helpers that connect with the password."""

    def __init__(self, pg: Any, base: Path) -> None:
        self.pg = pg
        self.base = base

    def conn(self, db: str = "varlor", **kw: Any) -> Any:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.pg.port, user="postgres", dbname=db,
                               password=PASSWORD, autocommit=True, **kw)

    def q(self, sql: str, db: str = "varlor", args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn(db) as c:
            cur = c.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def one(self, sql: str, db: str = "varlor", args: Any = None) -> Any:
        return self.q(sql, db, args)[0][0]

    def fingerprint(self, db: str = "varlor") -> tuple[str, str]:
        return (
            self.one("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM datasets t", db),
            self.one("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM dataset_columns t", db),
        )

    def fresh(self, db: str = "varlor") -> None:
        """(Re)create ``db`` as a copy of the seeded template."""
        from psycopg import sql

        with self.conn("postgres") as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE seed_template").format(sql.Identifier(db)))

    def store(self, **over: Any) -> dict[str, Any]:
        settings = {
            "host": "127.0.0.1",
            "port": self.pg.port,
            "user": "postgres",
            "database": "varlor",
            "staging_database": "varlor_staging",
            "password_env": PASSWORD_ENV,
            "wal_archive": str(self.pg.archive_dir),
            "pitr_dir": str(self.base / "pitr"),
            "data_dir": str(self.pg.data_dir),
        }
        settings.update(over)
        return settings


def _refused_without_password(pg: Any) -> bool:
    import psycopg

    try:
        psycopg.connect(pg.dsn(), connect_timeout=5).close()
    except psycopg.OperationalError:
        return True
    return False


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    import psycopg

    from runbook.sandbox.postgres import PostgresCluster

    # Not under pytest's basetemp: every pytest session started as root chmods the shared
    # /tmp/pytest-of-root back to 0700, which would lock the postgres user out of a running
    # cluster whenever another session starts meanwhile. /tmp itself stays traversable.
    base = Path(tempfile.mkdtemp(prefix="runbook-pgtest-", dir="/tmp"))
    pg = PostgresCluster(base / "cluster")
    # init() hands the directory to the postgres user and makes its ancestors traversable.
    pg.ensure_running(wal_archiving=True, archive_timeout=60, extra_settings={"fsync": "off"})
    os.environ[PASSWORD_ENV] = PASSWORD
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as c:
            c.execute("CREATE DATABASE seed_template")
            c.execute("CREATE DATABASE varlor_staging")
        with psycopg.connect(pg.dsn("seed_template"), autocommit=True) as c:
            c.execute(SCHEMA)
        with psycopg.connect(pg.dsn(), autocommit=True) as c:
            c.execute(f"ALTER USER postgres PASSWORD '{PASSWORD}'")
            hba = pg.data_dir / "pg_hba.conf"
            lines = [ln for ln in hba.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            lines = [ln.replace("trust", "scram-sha-256") if ln.split()[0] == "host" else ln for ln in lines]
            hba.write_text("\n".join(lines) + "\n")  # written in place: still owned by postgres
            c.execute("SELECT pg_reload_conf()")
        # Until the reload took effect: a TCP connection without the password is refused.
        wait_until(lambda: _refused_without_password(pg), bool, timeout=30, every=0.05)
        yield Cluster(pg, base)
    finally:
        pitr = base / "pitr"
        for d in pitr.glob("pitr_*") if pitr.exists() else []:
            PostgresCluster(d).stop()  # a failed PITR test must not leave a server behind
        pg.stop()
        os.environ.pop(PASSWORD_ENV, None)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def db(cluster: Cluster) -> Cluster:
    cluster.fresh("varlor")
    return cluster


class Run:
    """Calls actions with a StepContext whose log is a list."""

    def __init__(self, cluster: Cluster, tmp_path: Path, **store: Any) -> None:
        self.lines: list[str] = []
        self.outputs: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.env = Environment(name="test", stores={"postgres": cluster.store(**store)})

    def ctx(self) -> StepContext:
        return StepContext(incident_id="t", step_id="s", mode="live", environment=self.env,
                           workdir=self.tmp_path / "work", log=self.lines.append)

    def __call__(self, name: str, **params: Any) -> dict[str, Any]:
        action = registry()[name]
        p = action.Params(**params)
        self.lines.append("DESCRIBE " + action.describe(p))
        try:
            out = action.run(self.ctx(), p)
        except ActionError as exc:
            self.errors.append(str(exc))
            raise
        self.outputs.append(out)
        return out


@pytest.fixture
def run(cluster: Cluster, tmp_path: Path) -> Run:
    return Run(cluster, tmp_path)


def dump(run: Run, directory: Path, **kw: Any) -> dict[str, Any]:
    return run("postgres.dump", directory=str(directory), **kw)


# --- dump, verify, full restore ---------------------------------------------------------------


def test_dump_verify_restore_round_trip(db: Cluster, run: Run, tmp_path: Path) -> None:
    before = db.fingerprint()
    out = dump(run, tmp_path / "backups", compress=9)
    path = Path(out["path"])
    assert path.name.startswith("varlor_db_") and path.name.endswith(".dump") and path.is_file()
    assert out["size"] == path.stat().st_size > 1000
    assert path.read_bytes()[:5] == b"PGDMP"
    sidecar = Path(out["checksum_file"])
    assert sidecar.read_text() == f"{out['sha256']}  {path.name}\n"
    assert subprocess.run(["sha256sum", "-c", sidecar.name], cwd=path.parent, capture_output=True).returncode == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not list(path.parent.glob(".*.tmp"))

    verified = run("postgres.verify_dump", path=str(path))
    assert set(verified["tables"]) == {"datasets", "dataset_columns"}
    assert verified["verified"] and verified["sha256"] == out["sha256"] and verified["entries"] > 5

    # The disaster: one table gone, rows deleted from the other.
    db.q("DROP TABLE dataset_columns")
    db.q("DELETE FROM datasets WHERE tenant_id = 'tenant-3'")
    with db.conn() as hold:  # an app connection that the restore must end
        hold.execute("SELECT 1")
        restored = run("postgres.restore", path=str(path), database="varlor")
    assert restored["rows"] == {"datasets": DATASETS, "dataset_columns": COLUMNS}
    assert restored["total_rows"] == DATASETS + COLUMNS
    assert db.fingerprint() == before
    # Keys, foreign keys and sequences came back too.
    new_id = db.one(
        "INSERT INTO datasets (tenant_id, name, file_path, created_at) VALUES ('t', 'n', 'p', now()) RETURNING id"
    )
    assert new_id == DATASETS + 1
    with pytest.raises(Exception, match="foreign key"):
        db.q("INSERT INTO dataset_columns (dataset_id, name, type) VALUES (999999, 'x', 'text')")
    assert any("DROP DATABASE" in ln for ln in run.lines)


def test_pre_deployment_tag_and_two_dumps_in_one_second(db: Cluster, run: Run, tmp_path: Path) -> None:
    a = dump(run, tmp_path / "b", tag="pre_deployment")
    b = dump(run, tmp_path / "b", tag="pre_deployment")
    assert a["name"].startswith("pre_deployment_") and a["path"] != b["path"]
    assert Path(a["path"]).is_file() and Path(b["path"]).is_file()
    dump_action = registry()["postgres.dump"]
    desc = dump_action.describe(dump_action.Params(directory="/x", tag="pre_deployment"))
    assert "--format=custom" in desc and "no gzip" in desc


def test_corrupted_dump_stops_before_anything_destructive(db: Cluster, run: Run, tmp_path: Path) -> None:
    out = dump(run, tmp_path / "backups")
    path = Path(out["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ActionError, match=r"Checksum mismatch for the dump .*nothing was restored"):
        run("postgres.restore", path=str(path), database="varlor")
    assert db.one("SELECT count(*) FROM datasets") == DATASETS
    ran = [ln for ln in run.lines if not ln.startswith("DESCRIBE ")]
    assert not any("DROP DATABASE" in ln or "terminated" in ln for ln in ran)
    with pytest.raises(ActionError, match="Checksum mismatch"):
        run("postgres.verify_dump", path=str(path))
    with pytest.raises(ActionError, match="Checksum mismatch"):
        run("postgres.restore_tables", path=str(path), database="varlor", tables=["datasets", "dataset_columns"])
    # No checksum file at all: refused too, unless explicitly allowed.
    Path(out["checksum_file"]).unlink()
    with pytest.raises(ActionError, match="No checksum file"):
        run("postgres.restore", path=str(path), database="varlor")
    # A dump that is not an archive fails pg_restore --list, still before the DROP.
    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"not a dump" * 100)
    with pytest.raises(ActionError, match="pg_restore --list"):
        run("postgres.restore", path=str(junk), database="varlor", require_checksum=False)
    assert db.one("SELECT count(*) FROM dataset_columns") == COLUMNS


# --- selective restore ------------------------------------------------------------------------


def test_restore_tables_brings_back_exactly_the_dumped_rows(db: Cluster, run: Run, tmp_path: Path) -> None:
    before = db.fingerprint()
    path = dump(run, tmp_path / "backups")["path"]
    db.q("DELETE FROM datasets WHERE tenant_id = 'tenant-1'")  # cascades to their columns
    db.q("UPDATE datasets SET name = 'changed' WHERE id = 5")
    db.q("INSERT INTO datasets (tenant_id, name, file_path, created_at) VALUES ('new', 'n', 'p', now())")
    assert db.one("SELECT count(*) FROM dataset_columns") < COLUMNS

    # Listed child-first on purpose: the action loads parents first.
    out = run("postgres.restore_tables", path=path, database="varlor", tables=["dataset_columns", "datasets"])
    assert out["order"] == ["datasets", "dataset_columns"]
    assert out["rows"] == {"datasets": DATASETS, "dataset_columns": COLUMNS}
    assert db.fingerprint() == before
    # The sequence was not moved back: the next id does not collide with the row added meanwhile.
    nxt = db.one(
        "INSERT INTO datasets (tenant_id, name, file_path, created_at) VALUES ('t', 'n', 'p', now()) RETURNING id"
    )
    assert nxt == DATASETS + 2


def test_restore_tables_refuses_a_table_referenced_by_an_unlisted_one(db: Cluster, run: Run, tmp_path: Path) -> None:
    path = dump(run, tmp_path / "backups")["path"]
    db.q("DELETE FROM datasets WHERE id <= 10")
    with pytest.raises(ActionError, match="Table dataset_columns references datasets .*add dataset_columns to tables"):
        run("postgres.restore_tables", path=path, database="varlor", tables=["datasets"])
    assert db.one("SELECT count(*) FROM datasets") == DATASETS - 10
    with pytest.raises(ActionError, match="Table nope does not exist in PostgreSQL database varlor"):
        run("postgres.restore_tables", path=path, database="varlor", tables=["nope"])


def test_restore_tables_failure_rolls_back(db: Cluster, run: Run, tmp_path: Path) -> None:
    path = dump(run, tmp_path / "backups")["path"]
    # Only the child table, while its parents are gone: the load violates the foreign key, so the
    # whole transaction (TRUNCATE included) rolls back.
    db.q("ALTER TABLE dataset_columns DROP CONSTRAINT dataset_columns_dataset_id_fkey")
    db.q("DELETE FROM datasets WHERE id <= 100")
    db.q("DELETE FROM dataset_columns WHERE dataset_id > 1000")
    db.q("ALTER TABLE dataset_columns ADD CONSTRAINT dataset_columns_dataset_id_fkey "
         "FOREIGN KEY (dataset_id) REFERENCES datasets (id) ON DELETE CASCADE NOT VALID")
    left = db.one("SELECT count(*) FROM dataset_columns")
    with pytest.raises(ActionError, match="psql failed loading the rows into varlor .*rolled back"):
        run("postgres.restore_tables", path=path, database="varlor", tables=["dataset_columns"])
    assert db.one("SELECT count(*) FROM dataset_columns") == left


def test_restore_tables_stops_both_programs_when_psql_fails_early(db: Cluster, run: Run, tmp_path: Path) -> None:
    path = dump(run, tmp_path / "backups")["path"]
    db.q("DELETE FROM datasets WHERE id > 1400")
    # Every dumped row of the first table violates this: psql stops with most of the stream unread.
    db.q("ALTER TABLE datasets ADD CONSTRAINT no_rows CHECK (id < 0) NOT VALID")
    started = time.monotonic()
    with pytest.raises(ActionError, match=r"psql failed loading the rows into varlor \(.*no_rows.*rolled back"):
        run("postgres.restore_tables", path=path, database="varlor", tables=["datasets", "dataset_columns"])
    assert time.monotonic() - started < 20
    assert db.one("SELECT count(*) FROM datasets") == 1400


# --- staging restore, counts, odd names -------------------------------------------------------


def test_test_restore_to_staging_and_compare_counts(db: Cluster, run: Run, tmp_path: Path) -> None:
    path = dump(run, tmp_path / "backups")["path"]
    run("postgres.restore", path=path, database="varlor_staging", jobs=2)
    same = run("postgres.compare_counts")  # varlor vs staging_database from the store
    assert same["equal"] and same["counts_a"] == same["counts_b"] == {"datasets": DATASETS, "dataset_columns": COLUMNS}

    db.q("DELETE FROM datasets WHERE id > 1487", db="varlor_staging")
    with pytest.raises(ActionError) as err:
        run("postgres.compare_counts", tables=["datasets", "dataset_columns"])
    assert str(err.value) == (
        "Row count mismatch between varlor and varlor_staging: datasets 1500 vs 1487, dataset_columns 6000 vs 5948."
    )
    soft = run("postgres.compare_counts", fail_on_mismatch=False)
    assert soft["equal"] is False and "datasets 1500 vs 1487" in soft["mismatches"]

    counts = run("postgres.row_counts", database="varlor_staging", tables=["public.datasets"])
    assert counts == {"counts": {"datasets": 1487}, "total": 1487}
    everything = run("postgres.row_counts")
    assert everything["counts"] == {"dataset_columns": COLUMNS, "datasets": DATASETS}


def test_database_name_with_quote_and_space_works(db: Cluster, run: Run, tmp_path: Path) -> None:
    path = dump(run, tmp_path / "backups")["path"]
    out = run("postgres.restore", path=path, database=WEIRD)
    assert out["database"] == WEIRD and out["rows"]["datasets"] == DATASETS
    assert run("postgres.compare_counts", other_database=WEIRD)["equal"]
    weird_dump = dump(run, tmp_path / "weird", database=WEIRD)
    assert run("postgres.verify_dump", path=weird_dump["path"])["tables"]
    db.q('DELETE FROM datasets WHERE id < 3', db=WEIRD)
    run("postgres.restore_tables", path=weird_dump["path"], database=WEIRD, tables=["datasets", "dataset_columns"])
    assert db.one("SELECT count(*) FROM datasets", db=WEIRD) == DATASETS
    run("postgres.revoke_connect", database=WEIRD)
    run("postgres.grant_connect", database=WEIRD)
    desc = registry()["postgres.restore"].describe(registry()["postgres.restore"].Params(path="/d", database=WEIRD))
    assert 'DROP DATABASE IF EXISTS "we""ird name"' in desc
    # A name libpq would otherwise read as a connection string.
    assert run("postgres.restore", path=path, database="host=evil dbname=x")["rows"]["datasets"] == DATASETS
    assert run("postgres.row_counts", database="host=evil dbname=x")["total"] == DATASETS + COLUMNS
    with db.conn("postgres") as c:
        c.execute('DROP DATABASE "we""ird name" WITH (FORCE)')
        c.execute('DROP DATABASE "host=evil dbname=x" WITH (FORCE)')


def test_names_are_validated() -> None:
    action = registry()["postgres.restore_tables"]
    with pytest.raises(ValidationError, match="more than one dot"):
        action.Params(path="/d", database="varlor", tables=["a.b.c"])
    with pytest.raises(ValidationError, match="control character"):
        action.Params(path="/d", database="var\nlor", tables=["datasets"])
    with pytest.raises(ValidationError, match="63-byte"):
        action.Params(path="/d", database="x" * 64, tables=["datasets"])
    with pytest.raises(ValidationError, match="prefix"):
        registry()["postgres.dump"].Params(directory="/d", prefix="../etc/")
    with pytest.raises(ValidationError, match="ISO timestamp"):
        registry()["postgres.pitr_restore"].Params(target_time="yesterday")
    with pytest.raises(ValidationError):
        registry()["postgres.restore"].Params(path="/d")  # the database must be named: operators type it
    restore_action = registry()["postgres.restore"]
    assert restore_action.target(restore_action.Params(path="/d", database="varlor")) == "varlor"


def test_server_programs_are_found_without_the_sandbox() -> None:
    from runbook.stores.postgres import PostgresSettings, ProgramNotFound, find_program

    initdb = Path(find_program("initdb"))  # not on PATH on Debian: under /usr/lib/postgresql/*/bin
    assert initdb.name == "initdb" and os.access(initdb, os.X_OK)
    version = initdb.parent.parent.name
    assert find_program("pg_ctl", version) == str(PG_BIN / version / "bin" / "pg_ctl")
    with pytest.raises(ProgramNotFound, match="'pg_nope' not found"):
        find_program("pg_nope")
    with pytest.raises(ActionError, match="PostgreSQL program pg_nope is not installed: .*set bin_dir"):
        PostgresSettings().program("pg_nope")


def test_refuses_to_drop_the_maintenance_database(db: Cluster, run: Run, tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="Refusing to drop PostgreSQL database postgres"):
        run("postgres.restore", path="/nonexistent", database="postgres")


# --- connections ------------------------------------------------------------------------------


def test_terminate_revoke_and_grant_connect(db: Cluster, run: Run) -> None:
    import psycopg

    db.q("DROP ROLE IF EXISTS app")
    db.q("CREATE ROLE app LOGIN PASSWORD 'app-pw'")

    def app() -> Any:
        return psycopg.connect(host="127.0.0.1", port=db.pg.port, user="app", password="app-pw",
                               dbname="varlor", autocommit=True, connect_timeout=5)

    first, second = app(), app()
    assert run("postgres.terminate_connections", users=["app"])["terminated"] == 2
    for c in (first, second):
        with pytest.raises(psycopg.OperationalError):
            c.execute("SELECT 1")
        c.close()

    held = app()
    out = run("postgres.revoke_connect", roles=["app"], terminate=True)
    assert out["terminated"] == 1
    assert out["statements"] == ['REVOKE CONNECT ON DATABASE "varlor" FROM PUBLIC',
                                 'REVOKE CONNECT ON DATABASE "varlor" FROM "app"']
    with pytest.raises(psycopg.OperationalError, match="permission denied|CONNECT privilege"):
        app()
    held.close()
    run("postgres.grant_connect")
    with app() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert run("postgres.terminate_connections")["terminated"] == 0


# --- prune ------------------------------------------------------------------------------------


def aged_dumps(d: Path, hours_old: dict[str, float]) -> None:
    """Each dump and its .sha256, last modified that many hours ago."""
    d.mkdir()
    now = time.time()
    for name, hours in hours_old.items():
        for f in (d / name, d / f"{name}.sha256"):
            f.write_text("x")
            os.utime(f, (now - hours * 3600, now - hours * 3600))


def test_prune_dumps_keeps_recent_and_the_newest(run: Run, tmp_path: Path) -> None:
    d = tmp_path / "dumps"
    aged_dumps(d, {"varlor_db_a.dump": 40 * 24, "varlor_db_b.dump": 35 * 24, "varlor_db_c.dump": 2 * 24,
                   "other_x.dump": 90 * 24})
    out = run("postgres.prune_dumps", directory=str(d), older_than="30d")
    assert sorted(out["deleted"]) == ["varlor_db_a.dump", "varlor_db_b.dump"] and out["kept"] == 1
    assert sorted(p.name for p in d.iterdir()) == ["other_x.dump", "other_x.dump.sha256",
                                                    "varlor_db_c.dump", "varlor_db_c.dump.sha256"]
    # Even when every dump is old, the newest one stays.
    old = time.time() - 100 * 86400
    os.utime(d / "varlor_db_c.dump", (old, old))
    assert run("postgres.prune_dumps", directory=str(d), older_than="30d") == {"deleted": [], "kept": 1}
    with pytest.raises(ValidationError, match="keep_latest"):
        registry()["postgres.prune_dumps"].Params(directory=str(d), keep_latest=0)  # the newest is never a candidate


def test_prune_dumps_dry_run_and_keep_latest(run: Run, tmp_path: Path) -> None:
    d = tmp_path / "dumps"
    aged_dumps(d, {"varlor_db_a.dump": 50, "varlor_db_b.dump": 30, "varlor_db_c.dump": 20, "varlor_db_d.dump": 1})
    before = sorted(p.name for p in d.iterdir())
    dry = run("postgres.prune_dumps", directory=str(d), older_than="12h", keep_latest=2, dry_run=True)
    assert dry == {"deleted": ["varlor_db_a.dump", "varlor_db_b.dump"], "kept": 4}
    assert sorted(p.name for p in d.iterdir()) == before
    assert any(ln.startswith("would delete varlor_db_a.dump") for ln in run.lines)
    out = run("postgres.prune_dumps", directory=str(d), older_than="12h", keep_latest=2)
    assert out == {"deleted": ["varlor_db_a.dump", "varlor_db_b.dump"], "kept": 2}
    assert sorted(p.name for p in d.iterdir()) == ["varlor_db_c.dump", "varlor_db_c.dump.sha256",
                                                    "varlor_db_d.dump", "varlor_db_d.dump.sha256"]


# --- corruption scenario ----------------------------------------------------------------------


def test_check_integrity_and_reindex(db: Cluster, run: Run) -> None:
    out = run("postgres.check_integrity")
    assert out["ok"] and out["unreadable"] == {} and out["counts"]["datasets"] == DATASETS
    assert "checksum_failures" in out["stats"] and out["checksum_failures"] in (0, None)
    assert run("postgres.reindex")["database"] == "varlor"
    assert db.one("SELECT count(*) FROM datasets WHERE tenant_id = 'tenant-2'") == 300


def test_check_integrity_finds_a_table_with_a_damaged_page(cluster: Cluster, run: Run) -> None:
    cluster.fresh("broken")
    cluster.q(
        "CREATE TABLE notes AS SELECT g AS id, repeat('x', 200) AS body FROM generate_series(1, 500) g", db="broken"
    )
    rel = cluster.one("SELECT pg_relation_filepath('notes')", db="broken")
    cluster.q("CHECKPOINT", db="broken")
    cluster.pg.stop()  # so the damaged page is read from disk, not from shared buffers
    with open(cluster.pg.data_dir / rel, "r+b") as fh:
        fh.write(b"\xff" * 24)  # the page header of block 0
    cluster.pg.start()
    cluster.pg.wait_ready()
    with pytest.raises(
        ActionError, match=r"^PostgreSQL database broken looks corrupted: notes unreadable \(invalid page in block 0"
    ):
        run("postgres.check_integrity", database="broken")
    soft = run("postgres.check_integrity", database="broken", fail=False)
    assert soft["ok"] is False and list(soft["unreadable"]) == ["notes"]
    assert soft["counts"]["datasets"] == DATASETS  # the other tables were still read
    with cluster.conn("postgres") as c:
        c.execute("DROP DATABASE broken WITH (FORCE)")


# --- errors and secrets -----------------------------------------------------------------------


def test_connection_errors_are_one_clear_sentence(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runbook.core.procs import free_port

    down = Run(cluster, tmp_path, port=free_port())
    with pytest.raises(
        ActionError, match=r"^PostgreSQL at 127\.0\.0\.1:\d+ is not reachable: is the server running\? \("
    ):
        down("postgres.row_counts")
    monkeypatch.setenv("RUNBOOK_WRONG_PW", "definitely-wrong")
    wrong = Run(cluster, tmp_path, password_env="RUNBOOK_WRONG_PW")
    with pytest.raises(ActionError) as err:
        wrong("postgres.row_counts")
    assert str(err.value) == "PostgreSQL refused the password for user postgres: check the variable RUNBOOK_WRONG_PW."
    assert "definitely-wrong" not in str(err.value)
    missing = Run(cluster, tmp_path, password_env="RUNBOOK_UNSET_PW")
    with pytest.raises(ActionError, match="password variable RUNBOOK_UNSET_PW is not set"):
        missing("postgres.row_counts")
    ok = Run(cluster, tmp_path)
    with pytest.raises(ActionError, match="PostgreSQL database 'nope' does not exist at 127.0.0.1"):
        ok("postgres.row_counts", database="nope")
    with pytest.raises(ActionError, match="pg_dump of nope failed: .*does not exist"):
        ok("postgres.dump", directory=str(tmp_path / "d"), database="nope")
    assert not list((tmp_path / "d").iterdir())  # the partial file was removed


def test_password_never_in_argv_logs_outputs_or_errors(
    db: Cluster, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argvs: list[list[str]] = []
    real_popen = subprocess.Popen

    class Recording(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            argvs.append([str(x) for x in args])
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    path = dump(run, tmp_path / "backups")["path"]
    run("postgres.verify_dump", path=path)
    run("postgres.restore", path=path, database="varlor_staging")
    run("postgres.restore_tables", path=path, database="varlor", tables=["datasets", "dataset_columns"])
    run("postgres.compare_counts")
    with pytest.raises(ActionError):
        run("postgres.restore_tables", path=path, database="varlor", tables=["datasets"])
    with pytest.raises(ActionError):
        run("postgres.dump", directory=str(tmp_path / "x"), database="missing_db")
    assert {Path(a[0]).name for a in argvs} >= {"pg_dump", "pg_restore", "psql"}
    everything = json.dumps([argvs, run.lines, run.outputs, run.errors], default=str)
    assert PASSWORD not in everything
    assert any(ln.startswith("DESCRIBE ") for ln in run.lines)


# --- point-in-time recovery -------------------------------------------------------------------


def _wait_archived(db: Cluster, segment: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (db.pg.archive_dir / segment).exists():
        assert time.monotonic() < deadline, f"WAL segment {segment} was not archived"
        time.sleep(0.05)


def test_point_in_time_recovery_into_a_new_data_directory(db: Cluster, run: Run) -> None:
    from runbook.core.procs import processes_with_cwd

    db.q("CREATE TABLE IF NOT EXISTS events (id serial PRIMARY KEY, phase text)")
    backup = run("postgres.base_backup")
    assert (Path(backup["path"]) / "base.tar.gz").is_file()

    db.q("INSERT INTO events (phase) SELECT 'before' FROM generate_series(1, 50)")
    target = db.one("SELECT clock_timestamp()")
    time.sleep(0.05)
    db.q("INSERT INTO events (phase) SELECT 'after' FROM generate_series(1, 70)")
    db.q("DELETE FROM dataset_columns")  # the "accident" PITR undoes
    segment = db.one("SELECT pg_walfile_name(pg_switch_wal())")
    _wait_archived(db, segment)

    out = run("postgres.pitr_restore", target_time=target.isoformat(), tables=["events", "dataset_columns"])
    data_dir = Path(out["data_dir"])
    try:
        assert out["counts"] == {"events": 50, "dataset_columns": COLUMNS}
        assert "password" not in out["dsn"] and f"port={out['port']}" in out["dsn"]
        assert data_dir.parent.parent == db.base / "pitr" and (data_dir / "PG_VERSION").is_file()
        assert out["recovered_to"]
        import psycopg

        with psycopg.connect(out["dsn"], password=PASSWORD) as c:
            assert c.execute("SELECT phase, count(*) FROM events GROUP BY 1").fetchall() == [("before", 50)]
            assert c.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        # The source cluster keeps its present state.
        assert db.one("SELECT count(*) FROM events") == 120
        assert processes_with_cwd(data_dir, exe_name="postgres")
    finally:
        stopped = run("postgres.stop_cluster", data_dir=str(data_dir))
    assert stopped["stopped"] is True
    assert processes_with_cwd(data_dir, exe_name="postgres") == []
    assert not (data_dir / "postmaster.pid").exists()
    assert run("postgres.stop_cluster", data_dir=str(data_dir))["stopped"] is False
    with pytest.raises(ActionError, match="main PostgreSQL data directory"):
        run("postgres.stop_cluster", data_dir=str(db.pg.data_dir))
