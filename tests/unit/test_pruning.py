"""delete_each: the deleting half every prune action shares (dry run, order, logs, stopping)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.actions.spec import StepContext
from runbook.actions.support.pruning import delete_each
from runbook.core.environment import Environment
from runbook.core.errors import ActionError


def _ctx(tmp_path: Path, lines: list[str]) -> StepContext:
    return StepContext("inc", "step", "live", Environment("test"), tmp_path, log=lines.append)


def test_deletes_in_the_order_given_and_says_so_after_each(tmp_path: Path) -> None:
    lines: list[str] = []
    gone: list[str] = []
    deleted = delete_each(_ctx(tmp_path, lines), ["a", "b"], dry_run=False, label=lambda x: f"{x} (old)",
                          delete=gone.append, stopped=lambda n: f"stopped after {n}")
    assert deleted == ["a", "b"] and gone == ["a", "b"]
    assert lines == ["deleted a (old)", "deleted b (old)"]


def test_a_dry_run_touches_nothing_and_deletes_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    gone: list[str] = []
    deleted = delete_each(_ctx(tmp_path, lines), ["a", "b"], dry_run=True, label=str,
                          delete=gone.append, stopped=lambda n: f"stopped after {n}")
    assert deleted == [] and gone == []
    assert lines == ["would delete a", "would delete b"]


def test_a_stopped_step_stops_between_two_deletions(tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = _ctx(tmp_path, lines)
    gone: list[str] = []

    def delete(item: str) -> None:
        gone.append(item)
        ctx.cancelled.set()  # the operator stops the step while the first deletion runs

    with pytest.raises(ActionError, match=r"^stopped after 1$"):
        delete_each(ctx, ["a", "b", "c"], dry_run=False, label=str, delete=delete,
                    stopped=lambda n: f"stopped after {n}")
    assert gone == ["a"] and lines == ["deleted a"]


def test_a_failed_deletion_is_not_reported_as_deleted(tmp_path: Path) -> None:
    lines: list[str] = []

    def delete(item: str) -> None:
        raise ActionError(f"cannot delete {item}")

    with pytest.raises(ActionError, match="cannot delete a"):
        delete_each(_ctx(tmp_path, lines), ["a"], dry_run=False, label=str, delete=delete, stopped=str)
    assert lines == []
