"""Shared helpers for benchmarks: each bench_*.py exposes run() -> list of result rows."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (noisy machines: the median is steadier)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(
    figure: str, measured: str, target: str, ratio: float | None, passed: bool | None, baseline: str = ""
) -> dict[str, Any]:
    """One result; ``passed=None`` marks a figure shown for information, without a target."""
    return {
        "figure": figure,
        "measured": measured,
        "target": target,
        "ratio": ratio,
        "passed": passed,
        "baseline": baseline,
    }


def print_rows(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["figure"]) for r in rows)
    for r in rows:
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else "—"
        status = "INFO" if r["passed"] is None else "PASS" if r["passed"] else "FAIL"
        print(
            f"{r['figure']:<{width}}  {r['measured']:>14}  target {r['target']:<18} "
            f"ratio {ratio:>7}  {status}  {r.get('baseline', '')}"
        )
