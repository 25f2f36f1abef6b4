from datetime import UTC, datetime, timedelta

from runbook.drills.history import interval_days, status


def test_intervals_follow_the_seed_schedule_and_can_be_configured() -> None:
    assert interval_days(1, None) == 30 and interval_days(2, None) == 90 and interval_days(3, None) == 365
    assert interval_days(None, None) == 30
    assert interval_days(2, None, {"level2": 45}) == 45
    assert interval_days(3, "14d", {"level3": 1}) == 14  # the playbook's own drill_every wins


def test_overdue_status() -> None:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    recent = {"ts": (now - timedelta(days=10)).isoformat(), "passed": True}
    old = {"ts": (now - timedelta(days=40)).isoformat(), "passed": True}
    failed = {"ts": (now - timedelta(days=1)).isoformat(), "passed": False}
    assert status(True, recent, 30, now) == ("2026-11-11", False)
    assert status(True, old, 30, now)[1] is True
    assert status(True, failed, 30, now) == ("2026-11-20 FAILED", True)
    assert status(True, None, 30, now) == ("never", True)
    assert status(False, None, 30, now) == ("—", False)
