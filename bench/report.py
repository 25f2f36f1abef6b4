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
    lines = [
        "# Benchmark report",
        "",
        f"Written by `bench/run` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}. Ratios compare with a baseline measured in the same run.",
        "",
        "| benchmark | figure | measured | target | ratio vs baseline | baseline | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else "—"
        lines.append(
            f"| {r['bench']} | {r['figure']} | {r['measured']} | {r['target']} | {ratio} | {r.get('baseline', '')} | {'info' if r['passed'] is None else 'pass' if r['passed'] else '**FAIL**'} |"
        )
    (HERE / "REPORT.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'REPORT.md'}")
    return 0 if all(r["passed"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
