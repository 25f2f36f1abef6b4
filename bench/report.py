"""Run every benchmark module and write bench/REPORT.md (figure, measured, target, ratio, pass/fail)."""

from __future__ import annotations

import importlib
import platform
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.common import print_rows, row

HERE = Path(__file__).resolve().parent
HEADER = "| benchmark | figure | measured | target | ratio vs baseline | baseline | result |"


def _kept_rows(only: set[str]) -> list[str]:
    """The previous report's rows of the benchmarks not run now (a partial run keeps them)."""
    try:
        old = (HERE / "REPORT.md").read_text().splitlines()
    except OSError:
        return []
    return [line for line in old if line.startswith("| bench_") and line.split(" | ", 1)[0][2:] not in only]


def _commit() -> str:
    """The commit measured (with ``+changes`` when the tree differs from it)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=HERE.parent).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "runbook", "bench", ":!bench/REPORT.md")
    return head + (" +changes" if dirty else "")


def main(argv: list[str]) -> int:
    only = set(argv)
    rows = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            got = module.run()
        except Exception as exc:  # noqa: BLE001 - a broken benchmark is a failed row, not a crash
            traceback.print_exc()
            got = [row(f"{name} (did not run)", "error", "—", None, False, f"{type(exc).__name__}: {exc}")]
        for r in got:
            r["bench"] = name
        print_rows(got)
        rows += got
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    kept = _kept_rows(only) if only else []
    about = f"`bench/run {' '.join(sorted(only))}` on {when}" if only else f"`bench/run` on {when}"
    about += f" at commit {_commit()}"
    lines = [
        "# Benchmark report",
        "",
        f"Written by {about}, Python {platform.python_version()}, {platform.machine()}. Ratios compare "
        "with a baseline measured in the same run."
        + (" Rows of the other benchmarks are kept from the previous report." if kept else ""),
        "",
        HEADER,
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else "—"
        lines.append(
            f"| {r['bench']} | {r['figure']} | {r['measured']} | {r['target']} | {ratio} | {r.get('baseline', '')} "
            f"| {'info' if r['passed'] is None else 'pass' if r['passed'] else '**FAIL**'} |"
        )
    lines += kept
    (HERE / "REPORT.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'REPORT.md'}")
    return 0 if all(r["passed"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
