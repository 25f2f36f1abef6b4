"""storage.* actions against real directories with the real rsync (no mocks)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions.registry import registry
from runbook.actions.spec import Effect, StepContext
from runbook.actions.storage import MANIFEST, MANIFESTS, read_manifest
from runbook.core.environment import Environment
from runbook.core.errors import ActionError

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")

DAY = 86400


# --- helpers ---------------------------------------------------------------------------------


class Ctx:
    """A StepContext whose log is a list; ``cancel_on`` cancels the step when a line contains it."""

    def __init__(self, tmp_path: Path, cancel_on: str | None = None) -> None:
        self.lines: list[str] = []
        self.cancelled = threading.Event()

        def log(line: str) -> None:
            self.lines.append(line)
            if cancel_on and cancel_on in line:
                self.cancelled.set()

        self.ctx = StepContext(
            incident_id="inc-1",
            step_id="step",
            mode="live",
            environment=Environment(name="test"),
            workdir=tmp_path / "work",
            log=log,
            cancelled=self.cancelled,
        )


def act(action_name: str, tmp_path: Path, ctx: Ctx | None = None, /, **params: Any) -> dict[str, Any]:
    action = registry()[action_name]
    ctx = ctx or Ctx(tmp_path)
    try:
        return action.run(ctx.ctx, action.Params(**params))
    finally:
        # rsync's per-file records become counts and progress, never one log line per file.
        assert not [line for line in ctx.lines if line.startswith("::")]


def digest(path: Path, algo: str = "sha256") -> str:
    data = path.read_bytes()
    if algo == "xxh128":
        import xxhash

        return xxhash.xxh3_128(data).hexdigest()
    return hashlib.sha256(data).hexdigest()


def tree_hashes(top: Path, algo: str = "sha256") -> dict[str, str]:
    """Relative path → digest of every regular file (manifests left out)."""
    out = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            p = Path(dirpath, name)
            rel = p.relative_to(top).as_posix()
            if rel not in MANIFESTS.values() and not p.is_symlink():
                out[rel] = digest(p, algo)
    return out


def check_by_hand(snapshot: Path, algo: str) -> None:
    """The manifest passes the coreutils-style checker of its kind (sha256sum / xxh128sum -c)."""
    tool = {"sha256": "sha256sum", "xxh128": "xxh128sum"}[algo]
    assert shutil.which(tool), f"{tool} is not installed (scripts/test installs it)"
    subprocess.run([tool, "-c", "--quiet", MANIFESTS[algo]], cwd=snapshot, check=True)


def seed(root: Path) -> None:
    """Two tenants with two datasets each, like the seed's /var/www/varlor/storage/datasets."""
    for tenant in ("tenant-a", "tenant-b"):
        for ds in ("ds1", "ds2"):
            d = root / tenant / ds
            d.mkdir(parents=True)
            for i in range(3):
                (d / f"part{i}.csv").write_text(f"{tenant},{ds},{i}\n" * (i + 5))
    (root / "README").write_text("storage root\n")


def bump(path: Path, text: str) -> None:
    """Change a file so rsync's quick check (size + mtime) sees it as changed."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "storage" / "datasets"
    backups = tmp_path / "backups" / "storage"
    seed(root)
    return root, backups


def snap(tmp_path: Path, root: Path, backups: Path, **kw: Any) -> dict[str, Any]:
    return act("storage.snapshot", tmp_path, root=str(root), backups=str(backups), **kw)


# --- registry --------------------------------------------------------------------------------


def test_registry_declares_each_storage_effect() -> None:
    actions = {name: a for name, a in registry().items() if name.startswith("storage.")}
    assert {name: a.effect for name, a in actions.items()} == {
        "storage.snapshot": Effect.MUTATING,
        "storage.verify_snapshot": Effect.READ_ONLY,
        "storage.restore_full": Effect.DESTRUCTIVE,
        "storage.restore_tenant": Effect.DESTRUCTIVE,
        "storage.restore_dataset": Effect.DESTRUCTIVE,
        "storage.prune": Effect.DESTRUCTIVE,
        "storage.check_recent": Effect.READ_ONLY,
        "storage.check_size": Effect.READ_ONLY,
        "storage.list_snapshots": Effect.READ_ONLY,
    }
    for a in actions.values():
        assert a.outputs and a.summary


def test_target_and_describe_show_what_runs(store: tuple[Path, Path]) -> None:
    root, backups = store
    r = registry()
    s = r["storage.snapshot"]
    text = s.describe(s.Params(root=str(root), backups=str(backups)))
    assert text.startswith("rsync -a --delete ") and f"{root}/" in text and "latest" in text
    t = r["storage.restore_tenant"]
    p = t.Params(root=str(root), backups=str(backups), tenant="tenant-a", mode="750")
    assert t.target(p) == "tenant-a"
    assert "rsync -a" in t.describe(p) and "--chmod=D750,F750" in t.describe(p)
    d = r["storage.restore_dataset"]
    assert (
        d.target(d.Params(root=str(root), backups=str(backups), tenant="tenant-a", dataset=123))
        == "tenant-a/123"
    )
    f = r["storage.restore_full"]
    assert f.target(f.Params(root=str(root), backups=str(backups))) == str(root)


# --- snapshot --------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["xxh128", "sha256"])
def test_first_and_second_snapshot_share_unchanged_inodes(
    tmp_path: Path, store: tuple[Path, Path], algo: str
) -> None:
    root, backups = store
    first = snap(tmp_path, root, backups, checksums=algo)
    assert re.fullmatch(r"backup_\d{8}_\d{6}", first["name"])
    assert first["files"] == 13 and first["new_files"] == 13 and first["linked"] == 0
    assert first["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert os.readlink(backups / "latest") == first["name"]

    bump(root / "tenant-a/ds1/part0.csv", "changed\n")
    (root / "tenant-b/ds2/new.csv").write_text("new file\n")
    (root / "tenant-a/ds2/part2.csv").unlink()
    ctx = Ctx(tmp_path)
    second = act("storage.snapshot", tmp_path, ctx, root=str(root), backups=str(backups), checksums=algo)
    assert second["name"] != first["name"] and second["previous"] == first["name"]
    assert os.readlink(backups / "latest") == second["name"]
    s1, s2 = Path(first["path"]), Path(second["path"])

    assert (s1 / "README").stat().st_ino == (s2 / "README").stat().st_ino
    assert (s1 / "tenant-b/ds1/part1.csv").stat().st_ino == (s2 / "tenant-b/ds1/part1.csv").stat().st_ino
    assert (s1 / "tenant-a/ds1/part0.csv").stat().st_ino != (s2 / "tenant-a/ds1/part0.csv").stat().st_ino
    assert (s2 / "tenant-a/ds1/part0.csv").read_text() == "changed\n"
    assert (s2 / "tenant-b/ds2/new.csv").stat().st_nlink == 1
    assert not (s2 / "tenant-a/ds2/part2.csv").exists() and (s1 / "tenant-a/ds2/part2.csv").exists()
    assert second["files"] == 13 and second["new_files"] == 2 and second["linked"] == 11

    # The manifest lists exactly the snapshot's files with their true checksums, reused ones included.
    manifest = MANIFESTS[algo]
    assert second["manifest"] == str(s2 / manifest)
    assert read_manifest(str(s2 / manifest)) == tree_hashes(s2, algo)
    assert read_manifest(str(s1 / manifest)) == tree_hashes(s1, algo)
    how = "2 checksummed by rsync as it copied" if algo == "xxh128" else "2 hashed as rsync copied"
    assert any(how in line for line in ctx.lines)
    assert any("11 reused" in line and "0 read now" in line for line in ctx.lines)
    # ...in plain sha256sum / xxh128sum format, and only that one manifest.
    check_by_hand(s2, algo)
    assert [p.name for p in s2.iterdir() if p.name.startswith(".")] == [manifest]
    assert not (root / manifest).exists()
    # rsync's file list (xxh128) lived beside the copy only while it ran.
    assert sorted(p.name for p in backups.iterdir() if p.name.startswith(".")) == [".runbook.lock"]

    # No deletion this time: the file list comes from rsync's count, without a walk. Same result.
    bump(root / "tenant-b/ds1/part1.csv", "changed again\n")
    (root / "tenant-a/ds3").mkdir()
    (root / "tenant-a/ds3/fresh.csv").write_text("fresh\n")
    third = snap(tmp_path, root, backups, checksums=algo)
    s3 = Path(third["path"])
    assert read_manifest(str(s3 / manifest)) == tree_hashes(s3, algo) == tree_hashes(root, algo)
    assert third["files"] == 14 and third["new_files"] == 2


def test_tagged_snapshot_without_latest_and_name_collisions(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    base = snap(tmp_path, root, backups)
    tagged = snap(tmp_path, root, backups, tag="pre_deployment", update_latest=False)
    assert tagged["name"].startswith("pre_deployment_") and tagged["linked"] == 13
    assert os.readlink(backups / "latest") == base["name"]
    snap(tmp_path, root, backups, name="manual")
    with pytest.raises(ActionError, match="already exists"):
        snap(tmp_path, root, backups, name="manual")
    with pytest.raises(ValidationError):
        registry()["storage.snapshot"].Params(root=str(root), backups=str(backups), name="../x")


def test_snapshot_refuses_backups_inside_root(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, _ = store
    with pytest.raises(ActionError, match="inside the storage root"):
        snap(tmp_path, root, root / "backups")
    with pytest.raises(ActionError, match="Storage root not found"):
        snap(tmp_path, tmp_path / "nope", tmp_path / "b")


def test_odd_file_names_round_trip(tmp_path: Path) -> None:
    root, backups = tmp_path / "root", tmp_path / "backups"
    root.mkdir()
    names = [b"new\nline", b"back\\slash", b"not-utf8-\xff", b"caf\xc3\xa9", b"lit\\#012", b"trailing "]
    for n in names:
        with open(os.path.join(os.fsencode(root), n), "wb") as f:
            f.write(n * 3)
    first = snap(tmp_path, root, backups)
    with open(os.path.join(os.fsencode(root), b"new\nline"), "wb") as f:
        f.write(b"changed and longer")
    second = snap(tmp_path, root, backups)
    assert second["new_files"] == 1 and second["linked"] == len(names) - 1
    for s in (first, second):
        assert read_manifest(str(Path(s["path"]) / MANIFEST)) == tree_hashes(Path(s["path"]), "xxh128")
        check_by_hand(Path(s["path"]), "xxh128")
        assert act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot=s["name"])["ok"]
    # The same names through the sha256 path (rsync's stdout instead of its log file).
    third = snap(tmp_path, root, backups, checksums="sha256")
    path = Path(third["path"])
    assert read_manifest(str(path / MANIFESTS["sha256"])) == tree_hashes(path)
    check_by_hand(path, "sha256")
    assert act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot=third["name"])["ok"]


def test_cancelled_snapshot_leaves_nothing_that_looks_complete(
    tmp_path: Path, store: tuple[Path, Path]
) -> None:
    root, backups = store
    first = snap(tmp_path, root, backups)
    big = root / "tenant-c" / "bulk"
    big.mkdir(parents=True)
    block = os.urandom(64 * 1024)
    for i in range(1500):
        (big / f"f{i:05d}.bin").write_bytes(block[i % 1024 :] + block[: i % 1024])
    ctx = Ctx(tmp_path, cancel_on="unchanged files hard-linked")  # cancelled as rsync starts
    with pytest.raises(ActionError, match="stopped"):
        act("storage.snapshot", tmp_path, ctx, root=str(root), backups=str(backups))
    assert ctx.cancelled.is_set()
    assert sorted(p.name for p in backups.iterdir() if not p.name.startswith(".")) == [
        first["name"],
        "latest",
    ]
    assert not [p for p in backups.iterdir() if p.name.startswith(".incomplete-")]
    assert os.readlink(backups / "latest") == first["name"]

    # A run killed outright leaves only a hidden .incomplete-* directory: ignored, then cleaned up.
    (backups / ".incomplete-backup_20200101_000000" / "x").mkdir(parents=True)
    listed = act("storage.list_snapshots", tmp_path, backups=str(backups))
    assert listed["names"] == [first["name"]] and listed["count"] == 1
    snap(tmp_path, root, backups)
    assert not (backups / ".incomplete-backup_20200101_000000").exists()


# --- verify ----------------------------------------------------------------------------------


def test_verify_detects_a_modified_byte(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    s = snap(tmp_path, root, backups)
    ok = act("storage.verify_snapshot", tmp_path, backups=str(backups))
    assert ok["ok"] and ok["files"] == 13 and ok["bytes"] > 0

    victim = Path(s["path"]) / "tenant-b/ds2/part1.csv"
    data = bytearray(victim.read_bytes())
    data[3] ^= 0x01  # same size, one bit different
    victim.write_bytes(bytes(data))
    with pytest.raises(ActionError) as err:
        act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot="latest")
    msg = str(err.value)
    assert "tenant-b/ds2/part1.csv does not match its manifest checksum" in msg
    assert msg.count(".") >= 1 and "\n" not in msg

    (Path(s["path"]) / "tenant-a/ds1/part0.csv").unlink()
    (Path(s["path"]) / "tenant-a/zzz-extra.csv").write_text("x")
    got = act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot=s["path"], warn_only=True)
    assert got["ok"] is False and got["problems"] == 3
    assert got["first_problem"] == "tenant-a/ds1/part0.csv is missing"


def test_snapshots_of_both_manifest_kinds_live_side_by_side(tmp_path: Path, store: tuple[Path, Path]) -> None:
    """An older sha256 snapshot stays verifiable and restorable; the next xxh128 one hashes afresh."""
    root, backups = store
    old = snap(tmp_path, root, backups, checksums="sha256")
    bump(root / "tenant-a/ds1/part0.csv", "changed\n")
    ctx = Ctx(tmp_path)
    new = act("storage.snapshot", tmp_path, ctx, root=str(root), backups=str(backups))
    path = Path(new["path"])
    assert new["linked"] == 12 and new["new_files"] == 1  # still hard-linked against the old one
    assert read_manifest(str(path / MANIFESTS["xxh128"])) == tree_hashes(path, "xxh128")
    assert any("has a sha256 manifest, not xxh128" in line for line in ctx.lines)
    assert any("12 read now" in line for line in ctx.lines)  # digests of another kind cannot be reused
    verify = registry()["storage.verify_snapshot"]
    for s, algo in ((old, "sha256"), (new, "xxh128")):
        params = verify.Params(backups=str(backups), snapshot=s["name"])
        assert f"{MANIFESTS[algo]}" in verify.describe(params)
        assert act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot=s["name"])["ok"]
    (Path(old["path"]) / "README").write_text("bit rot\n")
    with pytest.raises(ActionError, match="README does not match its manifest checksum"):
        act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot=old["name"])
    # A restore from the old snapshot checks the restored files against its sha256 manifest.
    (Path(old["path"]) / "README").write_text("storage root\n")
    shutil.rmtree(root / "tenant-b")
    out = act(
        "storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), snapshot=old["name"],
        tenant="tenant-b",
    )
    assert out["verified"] and tree_hashes(root / "tenant-b") == tree_hashes(Path(old["path"]) / "tenant-b")


def test_a_killed_snapshots_leftovers_are_removed(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    snap(tmp_path, root, backups)
    (backups / ".incomplete-backup_20200101_000000").mkdir()
    (backups / ".incomplete-backup_20200101_000000.files").write_text("2020/01/01 00:00:00 [1] ::>f\n")
    snap(tmp_path, root, backups)
    assert sorted(p.name for p in backups.iterdir() if p.name.startswith(".")) == [".runbook.lock"]


def test_a_damaged_manifest_is_one_sentence(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    s = snap(tmp_path, root, backups)
    manifest = Path(s["path"]) / MANIFEST
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(["zz" + lines[0][2:], *lines[1:]]) + "\n")
    with pytest.raises(ActionError, match=r"entry 1 is not a valid xxh128 digest\.$"):
        act("storage.verify_snapshot", tmp_path, backups=str(backups))
    manifest.write_text("not a manifest line\n")
    with pytest.raises(ActionError, match=r"is damaged at line 1\.$"):
        act("storage.verify_snapshot", tmp_path, backups=str(backups))


def _reader(path: Path, log: Any = None) -> Any:
    from runbook.actions.storage.rsync import RecordsReader

    fd = os.open(path, os.O_RDONLY)
    return RecordsReader(fd, log or (lambda line: None)), fd


def test_rsync_records_are_read_strictly(tmp_path: Path) -> None:
    """Only rsync's own per-file records count: not a notice quoting one, not a directory."""
    from runbook.actions.storage.rsync import RsyncOutput

    blank = " " * 32
    path = tmp_path / "rsync.out"
    lines = [
        "created directory /backups/.incomplete-x",
        f"::cd+++++++++ {blank}  ./",
        f"::>f+++++++++ {'a' * 32}  plain.csv",
        f"::>f+++++++++ {blank}  no-sum.csv",
        f"::cf..t...... {blank}  attrs-only.csv",
        f'skipping "::>f+++++++++ {"c" * 32}  fake"',
        f"::>f+++++++++ {'d' * 32}  new\\#012line",
        "",
        "Number of files: 6 (reg: 5, dir: 1)",
    ]
    path.write_bytes("".join(f"{line}\n" for line in lines).encode())
    reader, fd = _reader(path)
    reader.finish()
    os.close(fd)
    assert reader.sent == 3 and reader.manifest() is None  # a file without checksum, an escaped name
    assert reader.other == [lines[0], lines[5], lines[8]]
    out = RsyncOutput(lambda line: None)
    reader.apply(out, checksums=True)
    assert out.transferred == {"plain.csv", "no-sum.csv", "new\nline"}
    assert out.digests == {"plain.csv": "a" * 32, "new\nline": "d" * 32}
    assert out.copied == 1 and not out.redone
    untrusted = RsyncOutput(lambda line: None)
    reader.apply(untrusted, checksums=False)  # --checksum: rsync's %C is from before the copy
    assert untrusted.transferred == out.transferred and untrusted.digests == {}

    # A file sent twice (rsync re-sent it after a failed check): no checksum of this run is trusted.
    path.write_bytes(f"{lines[2]}\n::>f+++++++++ {'e' * 32}  plain.csv\n".encode())
    reader, fd = _reader(path)
    reader.finish()
    os.close(fd)
    again = RsyncOutput(lambda line: None)
    reader.apply(again, checksums=True)
    assert again.redone

    # A record of another shape (a 16-character checksum) is never taken as a manifest line.
    path.write_bytes(f"::>f+++++++++ {'f' * 16}  short.csv\n".encode())
    reader, fd = _reader(path)
    reader.finish()
    os.close(fd)
    assert reader.malformed and reader.manifest() is None

    path.write_bytes(f"{lines[2]}\n::>f+++++++++ {'e' * 32}  b/c.csv\n".encode())
    reader, fd = _reader(path)
    reader.finish()
    os.close(fd)
    assert reader.manifest() == f"{'a' * 32}  plain.csv\n{'e' * 32}  b/c.csv\n".encode()


def test_records_are_read_while_rsync_writes_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole lines only while the file grows; progress lines from the reader's thread."""
    from runbook.actions.storage import rsync
    from runbook.actions.storage.rsync import RecordsReader

    monkeypatch.setattr(RecordsReader, "POLL", 0.01)
    monkeypatch.setattr(rsync, "PROGRESS_EVERY", 0.0)
    path = tmp_path / "rsync.out"
    logged: list[str] = []
    with open(path, "wb", buffering=0) as f:
        reader, fd = _reader(path, logged.append)
        f.write(f"::>f+++++++++ {'a' * 32}  one.csv\n::>f+++++++++ {'b' * 32}  tw".encode())
        deadline = time.monotonic() + 5
        while not any("1 files copied so far" in line for line in logged) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.lines == [f"{'a' * 32}  one.csv".encode()]  # the half-written line waits
        f.write(b"o.csv\n")
    reader.finish()
    os.close(fd)
    assert reader.sent == 2 and reader.lines[1] == f"{'b' * 32}  two.csv".encode()
    assert any("1 files copied so far" in line for line in logged)


def test_first_snapshot_manifest_comes_straight_from_rsync(tmp_path: Path) -> None:
    """Names that need no unescaping (spaces, '::>f', double spaces) take the direct path."""
    root, backups = tmp_path / "root", tmp_path / "backups"
    (root / "t").mkdir(parents=True)
    for name in (" leading", "trailing ", "has ::>f+++++++++ inside", "two  spaces", "t/plain.csv"):
        (root / name).write_text(name * 3)
    ctx = Ctx(tmp_path)
    s = act("storage.snapshot", tmp_path, ctx, root=str(root), backups=str(backups))
    assert any("every one checksummed by rsync" in line for line in ctx.lines)
    path = Path(s["path"])
    assert s["files"] == s["new_files"] == 5 and s["manifest"] == str(path / MANIFEST)
    assert read_manifest(str(path / MANIFEST)) == tree_hashes(path, "xxh128")
    check_by_hand(path, "xxh128")


def test_checksum_option_never_records_a_checksum_taken_before_the_copy(
    tmp_path: Path, store: tuple[Path, Path]
) -> None:
    root, backups = store
    snap(tmp_path, root, backups)
    (root / "tenant-a/ds1/part0.csv").write_text("same size!\n"[: (root / "tenant-a/ds1/part0.csv").stat().st_size])
    ctx = Ctx(tmp_path)
    s = act("storage.snapshot", tmp_path, ctx, root=str(root), backups=str(backups), checksum=True)
    assert s["new_files"] == 1
    assert any("1 read now" in line for line in ctx.lines)  # the copied file is read, not trusted
    assert read_manifest(str(Path(s["path"]) / MANIFEST)) == tree_hashes(Path(s["path"]), "xxh128")


def test_an_rsync_without_xxh128_gets_a_sha256_manifest(
    tmp_path: Path, store: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runbook.actions.storage import rsync

    root, backups = store
    monkeypatch.setattr(rsync, "rsync_has_xxh128", lambda: False)  # as on rsync 3.1 (RHEL 8)
    ctx = Ctx(tmp_path)
    s = act("storage.snapshot", tmp_path, ctx, root=str(root), backups=str(backups))
    assert any("no xxh128 checksum" in line and line.startswith("WARNING") for line in ctx.lines)
    assert s["manifest"] == str(Path(s["path"]) / MANIFESTS["sha256"])
    assert read_manifest(s["manifest"]) == tree_hashes(Path(s["path"]))
    assert act("storage.verify_snapshot", tmp_path, backups=str(backups))["ok"]


def test_verify_without_manifest_or_snapshot(tmp_path: Path) -> None:
    backups = tmp_path / "b"
    (backups / "backup_20250101_000000").mkdir(parents=True)
    with pytest.raises(ActionError, match="has no manifest"):
        act("storage.verify_snapshot", tmp_path, backups=str(backups), snapshot="backup_20250101_000000")
    with pytest.raises(ActionError, match="not found"):
        act("storage.verify_snapshot", tmp_path, backups=str(backups))


# --- restores --------------------------------------------------------------------------------


def test_full_restore_moves_the_tree_aside_and_restores_exactly(
    tmp_path: Path, store: tuple[Path, Path]
) -> None:
    root, backups = store
    s = snap(tmp_path, root, backups)
    expected = tree_hashes(Path(s["path"]))
    shutil.rmtree(root / "tenant-a")
    bump(root / "tenant-b/ds1/part0.csv", "corrupted\n")
    (root / "junk.tmp").write_text("junk")
    damaged = tree_hashes(root)

    out = act("storage.restore_full", tmp_path, root=str(root), backups=str(backups), mode="750")
    aside = Path(out["moved_aside"])
    assert re.fullmatch(re.escape(str(root)) + r"_old_\d{8}_\d{6}", str(aside))
    assert tree_hashes(aside) == damaged
    assert tree_hashes(root) == expected
    assert not (root / MANIFEST).exists()
    assert out["verified"] and out["files"] == len(expected) and out["snapshot"] == s["path"]
    assert (root / "tenant-a").stat().st_mode & 0o777 == 0o750
    assert (root / "tenant-a/ds1/part0.csv").stat().st_mode & 0o777 == 0o750
    # The restore is a copy: writing to the live tree must never change the snapshot.
    assert (root / "README").stat().st_ino != (Path(s["path"]) / "README").stat().st_ino


def test_full_restore_fails_verification_of_a_damaged_snapshot(
    tmp_path: Path, store: tuple[Path, Path]
) -> None:
    root, backups = store
    s = snap(tmp_path, root, backups)
    (Path(s["path"]) / "README").write_text("bit rot!\n")
    with pytest.raises(ActionError, match="README does not match"):
        act("storage.restore_full", tmp_path, root=str(root), backups=str(backups))
    assert list(tmp_path.glob("storage/datasets_old_*"))  # the previous tree is kept aside


def test_tenant_restore_touches_only_that_tenant(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    s = snap(tmp_path, root, backups)
    expected = tree_hashes(Path(s["path"]) / "tenant-a")
    (root / "tenant-a/ds1/part1.csv").write_text("same size?\n")  # content change, maybe same size
    (root / "tenant-a/ds2/part0.csv").unlink()
    bump(root / "tenant-b/ds1/part0.csv", "tenant b changed after the snapshot\n")
    other = tree_hashes(root / "tenant-b")

    out = act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="tenant-a")
    assert tree_hashes(root / "tenant-a") == expected
    assert tree_hashes(root / "tenant-b") == other
    assert out["verified"] and out["path"] == str(root.resolve() / "tenant-a") and out["files"] == 6


def test_tenant_restore_removes_what_a_cut_restore_left(tmp_path: Path, store: tuple[Path, Path]) -> None:
    """An rsync killed mid-copy leaves `.name.XXXXXX`; the next restore (no --delete) must not keep it."""
    root, backups = store
    s = snap(tmp_path, root, backups)
    expected = tree_hashes(Path(s["path"]) / "tenant-a")
    (root / "tenant-a/ds1/.part1.csv.Xq7b2Z").write_text("half a fi")  # a cut copy of part1.csv
    (root / "tenant-a/ds1/.operator-notes.Ab12Cd").write_text("mine\n")  # not a snapshot file's copy
    out = act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="tenant-a")
    left = tree_hashes(root / "tenant-a")
    assert left.pop("ds1/.operator-notes.Ab12Cd") and left == expected
    assert out["verified"]


def test_dataset_restore(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    s = snap(tmp_path, root, backups)
    expected = tree_hashes(Path(s["path"]) / "tenant-a/ds1")
    shutil.rmtree(root / "tenant-a/ds1")
    bump(root / "tenant-a/ds2/part0.csv", "ds2 changed\n")
    ds2 = tree_hashes(root / "tenant-a/ds2")
    out = act(
        "storage.restore_dataset",
        tmp_path,
        root=str(root),
        backups=str(backups),
        tenant="tenant-a",
        dataset="ds1",
    )
    assert tree_hashes(root / "tenant-a/ds1") == expected
    assert tree_hashes(root / "tenant-a/ds2") == ds2
    assert out["files"] == 3
    with pytest.raises(ActionError, match="dataset 'tenant-a/ds9' is not in snapshot"):
        act(
            "storage.restore_dataset",
            tmp_path,
            root=str(root),
            backups=str(backups),
            tenant="tenant-a",
            dataset="ds9",
        )
    with pytest.raises(ActionError, match="tenant 'tenant-x' is not in snapshot"):
        act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="tenant-x")


HOSTILE = ["../../etc", "/", "..", ".", "a/b", "tenant\x00", "/etc", "", "-rf", " x", "a\n", "x" * 129]


@pytest.mark.parametrize("bad", HOSTILE + ["ABSOLUTE"])
def test_hostile_ids_are_refused_and_nothing_is_written(
    tmp_path: Path, store: tuple[Path, Path], bad: str
) -> None:
    root, backups = store
    snap(tmp_path, root, backups)
    outside = tmp_path / "outside"
    outside.mkdir()
    if bad == "ABSOLUTE":
        bad = str(outside)
    before = tree_hashes(tmp_path)
    r = registry()
    for name, extra in (
        ("storage.restore_tenant", {"tenant": bad}),
        ("storage.restore_dataset", {"tenant": "tenant-a", "dataset": bad}),
        ("storage.restore_dataset", {"tenant": bad, "dataset": "ds1"}),
    ):
        action = r[name]
        params = {"root": str(root), "backups": str(backups), **extra}
        with pytest.raises(ValidationError) as err:
            action.Params(**params)
        assert "is not a valid id: use letters, digits, '.', '_' or '-'." in str(err.value)
        # Even params built without validation are re-checked before any path is joined.
        unchecked = action.Params.model_construct(
            **{
                **action.Params(
                    root=params["root"],
                    backups=params["backups"],
                    tenant="t",
                    **({"dataset": "d"} if "dataset" in extra else {}),
                ).model_dump(),
                **extra,
            }
        )
        with pytest.raises(ActionError, match="is not a valid id"):
            action.run(Ctx(tmp_path).ctx, unchecked)
    assert tree_hashes(tmp_path) == before
    assert list(outside.iterdir()) == []


def test_tenant_id_error_sentence() -> None:
    action = registry()["storage.restore_tenant"]
    with pytest.raises(ValidationError) as err:
        action.Params(root="/r", backups="/b", tenant="../../etc")
    assert "Tenant id '../../etc' is not a valid id: use letters, digits, '.', '_' or '-'." in str(err.value)


def test_symlinks_cannot_make_a_restore_escape(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("do not copy or overwrite me\n")
    # A tenant that is a symlink in the live tree when the snapshot is taken is kept as a symlink.
    os.symlink(outside, root / "evil")
    s = snap(tmp_path, root, backups)
    assert (Path(s["path"]) / "evil").is_symlink()
    (root / "evil").unlink()

    with pytest.raises(ActionError, match="symlink"):
        act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="evil")
    assert not (root / "evil").exists()

    # A dataset that became a symlink inside the snapshot.
    ds = Path(s["path"]) / "tenant-b" / "ds2"
    shutil.rmtree(ds)
    os.symlink(outside, ds)
    with pytest.raises(ActionError, match="symlink"):
        act(
            "storage.restore_dataset",
            tmp_path,
            root=str(root),
            backups=str(backups),
            tenant="tenant-b",
            dataset="ds2",
        )

    # A live tenant directory replaced by a symlink to elsewhere: never written through.
    shutil.rmtree(root / "tenant-a")
    os.symlink(outside, root / "tenant-a")
    with pytest.raises(ActionError, match="symlink"):
        act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="tenant-a")
    with pytest.raises(ActionError, match="symlink"):
        act(
            "storage.restore_dataset",
            tmp_path,
            root=str(root),
            backups=str(backups),
            tenant="tenant-a",
            dataset="ds1",
        )
    (root / "tenant-a").unlink()

    # A symlink deeper in the live tenant is replaced by the snapshot's directory, not followed.
    (root / "tenant-a").mkdir()
    os.symlink(outside, root / "tenant-a" / "ds1")
    act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="tenant-a")
    assert not (root / "tenant-a" / "ds1").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "do not copy or overwrite me\n"


def test_latest_pointing_outside_backups_is_refused(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    snap(tmp_path, root, backups)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(backups / "latest", elsewhere, symlinks=True)
    (backups / "latest").unlink()
    os.symlink(elsewhere, backups / "latest")
    with pytest.raises(ActionError, match="outside the backups directory"):
        act("storage.restore_tenant", tmp_path, root=str(root), backups=str(backups), tenant="tenant-a")


# --- prune and checks ------------------------------------------------------------------------


def _aged(backups: Path, name: str, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(backups / name, (t, t))


def test_prune_keeps_latest_and_recent(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    for name in ("backup_20250101_030000", "backup_20250102_030000", "backup_20250201_030000"):
        snap(tmp_path, root, backups, name=name, update_latest=False)
    snap(tmp_path, root, backups, name="backup_20250301_030000")  # latest
    snap(tmp_path, root, backups, name="pre_deployment_20250101", update_latest=False)
    for name, days in (
        ("backup_20250101_030000", 60),
        ("backup_20250102_030000", 59),
        ("backup_20250201_030000", 5),
        ("backup_20250301_030000", 45),
        ("pre_deployment_20250101", 90),
    ):
        _aged(backups, name, days)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep-me").write_text("x")
    os.symlink(outside, backups / "backup_19990101_000000")
    os.utime(backups / "backup_19990101_000000", (0, 0), follow_symlinks=False)

    dry = act("storage.prune", tmp_path, backups=str(backups), older_than="30d", dry_run=True)
    assert dry["deleted"] == ["backup_20250101_030000", "backup_20250102_030000"] and dry["dry_run"]
    assert (backups / "backup_20250101_030000").is_dir()

    out = act("storage.prune", tmp_path, backups=str(backups), older_than="30d")
    assert out["deleted"] == ["backup_20250101_030000", "backup_20250102_030000"]
    assert sorted(out["kept"]) == ["backup_20250201_030000", "backup_20250301_030000"]
    assert not (backups / "backup_20250101_030000").exists()
    assert (backups / "backup_20250301_030000").is_dir()  # old, but latest
    assert (backups / "pre_deployment_20250101").is_dir()  # does not match the pattern
    assert (outside / "keep-me").exists() and (backups / "backup_19990101_000000").is_symlink()
    assert act("storage.verify_snapshot", tmp_path, backups=str(backups))["ok"]


@pytest.fixture
def local_time_ahead_of_utc(monkeypatch: pytest.MonkeyPatch) -> Any:
    """This host's time zone is UTC+9, so a local-time name sorts after a UTC name of the same moment."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_snapshots_named_in_local_time_by_older_versions(
    tmp_path: Path, store: tuple[Path, Path], local_time_ahead_of_utc: None
) -> None:
    """New names are UTC; an older version's local-time name still orders, links and prunes by age."""
    from runbook.core.timestamps import find_stamp, utc_now

    root, backups = store
    old_name = "backup_" + time.strftime("%Y%m%d_%H%M%S", time.localtime(time.time() - 3600))
    snap(tmp_path, root, backups, name=old_name)  # as an older version named it, an hour ago
    _aged(backups, old_name, 1 / 24)
    new = snap(tmp_path, root, backups)
    taken = find_stamp(new["name"])
    assert taken is not None and abs((utc_now() - taken).total_seconds()) < 120  # UTC, not local time
    assert old_name > new["name"]  # by name the older snapshot would look newer
    assert new["previous"] == old_name and new["linked"] == 13

    (backups / "latest").unlink()
    listed = act("storage.list_snapshots", tmp_path, backups=str(backups))
    assert listed["names"] == [old_name, new["name"]] and listed["newest"] == new["name"]
    assert act("storage.check_recent", tmp_path, backups=str(backups), max_age="1h")["name"] == new["name"]
    assert act("storage.check_size", tmp_path, backups=str(backups), snapshot=new["name"])["previous"] == old_name
    third = snap(tmp_path, root, backups)
    assert third["previous"] == new["name"]  # without `latest`: the newest by age, not by name
    pruned = act("storage.prune", tmp_path, backups=str(backups), older_than="30m", dry_run=True)
    assert pruned["deleted"] == [old_name] and pruned["kept"] == [new["name"], third["name"]]

    moved = act("storage.restore_full", tmp_path, root=str(root), backups=str(backups))["moved_aside"]
    aside = find_stamp(Path(moved).name)
    assert aside is not None and abs((utc_now() - aside).total_seconds()) < 120


def test_check_recent(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    with pytest.raises(ActionError, match="No storage snapshot"):
        act("storage.check_recent", tmp_path, backups=str(backups))
    s = snap(tmp_path, root, backups)
    out = act("storage.check_recent", tmp_path, backups=str(backups), max_age="24h")
    assert out["name"] == s["name"] and out["age_seconds"] < 60 and out["complete"]
    _aged(backups, s["name"], 2)
    with pytest.raises(ActionError, match=r"is 2d00h old, older than 24h\."):
        act("storage.check_recent", tmp_path, backups=str(backups), max_age="24h")
    (backups / "latest").unlink()  # falls back to the newest backup_*
    assert act("storage.check_recent", tmp_path, backups=str(backups), max_age="3d")["name"] == s["name"]


def test_check_size_and_list(tmp_path: Path, store: tuple[Path, Path]) -> None:
    root, backups = store
    first = snap(tmp_path, root, backups, name="backup_20250101_030000")
    _aged(backups, first["name"], 1)
    snap(tmp_path, root, backups, name="backup_20250102_030000")
    ok = act("storage.check_size", tmp_path, backups=str(backups))
    assert ok["ok"] and ok["previous"] == first["name"] and ok["change"] == 0
    shutil.rmtree(root / "tenant-a")
    shutil.rmtree(root / "tenant-b")
    snap(tmp_path, root, backups, name="backup_20250103_030000")
    with pytest.raises(ActionError, match="shrank by"):
        act("storage.check_size", tmp_path, backups=str(backups))
    assert act("storage.check_size", tmp_path, backups=str(backups), warn_only=True)["ok"] is False

    listed = act("storage.list_snapshots", tmp_path, backups=str(backups))
    assert listed["latest"] == "backup_20250103_030000" and listed["count"] == 3
    assert listed["names"] == ["backup_20250101_030000", "backup_20250102_030000", "backup_20250103_030000"]
