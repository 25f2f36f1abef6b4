"""pubsub.* actions against Google's Pub/Sub emulator with the real google-cloud-pubsub client.

The emulator starts once for the module; the test that stops and restarts it runs last.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runbook.actions import pubsub as actions_module
from runbook.actions.pubsub import snapshot_created
from runbook.actions.registry import registry as full_registry
from runbook.actions.spec import Effect, StepContext
from runbook.core.environment import Environment
from runbook.core.errors import ActionError, StoreUnavailable
from runbook.sandbox.emulators import PUBSUB_BIN, PubSubEmulator
from runbook.stores import pubsub as psstore
from runbook.stores.pool import ClientPool
from tests.stores.emulated import PROJECT, running, sandbox_env

POOL = ClientPool()  # clients these tests make directly (actions get their own through StepContext)


def registry() -> dict[str, Any]:
    """The actions of this package (independent of the other packages the registry loads)."""
    return {spec.name: spec for spec in actions_module.SPECS}


pytestmark = pytest.mark.skipif(not PUBSUB_BIN.exists(), reason="the Pub/Sub emulator (Cloud SDK) is not installed")


@pytest.fixture(scope="module")
def ps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    yield from running(PubSubEmulator(tmp_path_factory.mktemp("pubsub"), project=PROJECT), POOL.close)


@pytest.fixture(scope="module")
def env(ps: PubSubEmulator) -> Environment:
    return sandbox_env(
        pubsub_host=ps.endpoint,
        pubsub_topic="orders-events",
        pubsub_subscription="orders-events-dataflow",
    )


class Admin:
    """An independent admin client (not the code under test) for topics and subscriptions."""

    def __init__(self, host: str) -> None:
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

        self.pub = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)))
        self.sub = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))

    def pipeline(self, topic: str, sub: str) -> None:
        from google.api_core.exceptions import AlreadyExists

        t = f"projects/{PROJECT}/topics/{topic}"
        try:
            self.pub.create_topic(name=t, timeout=30)
        except AlreadyExists:
            pass
        try:
            self.sub.create_subscription(
                request={
                    "name": f"projects/{PROJECT}/subscriptions/{sub}",
                    "topic": t,
                    "retain_acked_messages": True,
                    "ack_deadline_seconds": 60,
                },
                timeout=30,
            )
        except AlreadyExists:
            pass


def act(env: Environment, tmp_path: Path, name: str, **params: Any) -> dict[str, Any]:
    action = registry()[name]
    ctx = StepContext(
        incident_id="t", step_id="s", mode="live", environment=env, workdir=tmp_path, log=lambda line: None
    )
    return action.run(ctx, action.Params(**params))


def ids(prefix: str, start: int, stop: int) -> list[str]:
    return [f"{prefix}{n:06d}" for n in range(start, stop)]


# --- contract --------------------------------------------------------------------------------


def test_effects_targets_and_descriptions() -> None:
    reg = registry()
    expected = {
        "pubsub.create_snapshot": Effect.MUTATING,
        "pubsub.seek": Effect.MUTATING,
        "pubsub.list_snapshots": Effect.READ_ONLY,
        "pubsub.prune_snapshots": Effect.DESTRUCTIVE,
        "pubsub.publish_events": Effect.MUTATING,
        "pubsub.drain_count": Effect.MUTATING,
    }
    for name, effect in expected.items():
        assert reg[name].effect == effect, name
        assert name in full_registry(), name  # auto-loaded by the action registry
    seek = reg["pubsub.seek"]
    p = seek.Params(subscription="ecommerce-events-dataflow", snapshot="before-deploy")
    assert seek.describe(p) == "pubsub.seek(subscription=ecommerce-events-dataflow, snapshot=before-deploy)"
    assert seek.target(p) == "ecommerce-events-dataflow"
    p = seek.Params(subscription="ecommerce-events-dataflow", timestamp="2025-11-20 10:30")
    assert seek.describe(p) == "pubsub.seek(subscription=ecommerce-events-dataflow, time=2025-11-20T10:30:00Z)"
    with pytest.raises(ValidationError):
        seek.Params(subscription="abc")
    with pytest.raises(ValidationError):
        seek.Params(snapshot="abc", timestamp="2025-11-20T10:30:00Z")
    with pytest.raises(ValidationError):
        reg["pubsub.create_snapshot"].Params(subscription="ab")  # Pub/Sub wants 3+ characters
    prune = reg["pubsub.prune_snapshots"]
    p = prune.Params(prefix="ecommerce-events-dataflow-snapshot-")
    assert prune.target(p) == "ecommerce-events-dataflow-snapshot-*"
    assert p.older_than == "3d" and p.keep_latest == 1 and p.dry_run is False
    assert "older than 3d, keeping the newest 1" in prune.describe(p)
    with pytest.raises(ValidationError):
        prune.Params(older_than_days=3)  # the shared Retention vocabulary only
    with pytest.raises(ValidationError):
        prune.Params(keep_latest=0)  # the newest snapshot is never pruned


def test_light_import_and_cached_clients(env: Environment) -> None:
    code = "import sys, runbook.actions.pubsub, runbook.stores.pubsub; print('google.cloud.pubsub_v1' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    c = psstore.client(env, pool=POOL)
    assert psstore.client(env, pool=POOL) is c and c.publisher is c.publisher and c.subscriber is c.subscriber


# --- replay of a lost window -----------------------------------------------------------------


def test_seek_replays_exactly_the_lost_window(ps: PubSubEmulator, env: Environment, tmp_path: Path) -> None:
    Admin(ps.endpoint).pipeline("orders-events", "orders-events-dataflow")

    out = act(env, tmp_path, "pubsub.publish_events", count=1000, id_prefix="E", seed=3)
    assert out["count"] == 1000 and (out["first_event_id"], out["last_event_id"]) == ("E000000", "E000999")
    assert out["first_message_id"] != out["last_message_id"]
    drained = act(env, tmp_path, "pubsub.drain_count", idle_seconds=1)
    assert drained["count"] == 1000 and drained["duplicates"] == 0 and drained["event_ids"] == ids("E", 0, 1000)

    snap = act(env, tmp_path, "pubsub.create_snapshot")
    assert snap["snapshot"].startswith("orders-events-dataflow-snapshot-")
    expire = datetime.fromisoformat(snap["expire_time"].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < expire - datetime.now(UTC) <= timedelta(days=7)
    time.sleep(0.3)
    mark = datetime.now(UTC)
    time.sleep(0.3)

    # The lost window: 100 more events, consumed (acked) by a job that then failed.
    act(env, tmp_path, "pubsub.publish_events", count=100, id_prefix="E", start=1000)
    assert act(env, tmp_path, "pubsub.drain_count", idle_seconds=1)["event_ids"] == ids("E", 1000, 1100)
    assert act(env, tmp_path, "pubsub.drain_count", idle_seconds=1)["count"] == 0

    act(env, tmp_path, "pubsub.seek", snapshot=snap["snapshot"])
    replay = act(env, tmp_path, "pubsub.drain_count", idle_seconds=1, expect_count=100)
    assert replay["event_ids"] == ids("E", 1000, 1100) and replay["count"] == 100 and replay["duplicates"] == 0

    act(env, tmp_path, "pubsub.seek", timestamp=mark.isoformat())
    replay = act(env, tmp_path, "pubsub.drain_count", idle_seconds=1)
    assert replay["event_ids"] == ids("E", 1000, 1100) and replay["count"] == 100

    act(env, tmp_path, "pubsub.seek", snapshot=snap["snapshot"])
    with pytest.raises(ActionError) as info:
        act(env, tmp_path, "pubsub.drain_count", idle_seconds=1, expect_count=99)
    assert str(info.value) == "orders-events-dataflow delivered 100 distinct events, expected 99."


def test_list_and_prune_snapshots_by_name_timestamp(ps: PubSubEmulator, env: Environment, tmp_path: Path) -> None:
    """The emulator drops snapshot labels: age comes from the timestamp in the name."""
    Admin(ps.endpoint).pipeline("audit-events", "audit-events-sub")
    now = datetime.now(UTC)
    names = [f"audit-snapshot-{(now - timedelta(days=d)).strftime('%Y%m%d-%H%M%S')}" for d in (5, 4, 1)]
    for name in [*names, "audit-manual"]:
        act(env, tmp_path, "pubsub.create_snapshot", subscription="audit-events-sub", snapshot=name)

    listed = act(env, tmp_path, "pubsub.list_snapshots", prefix="audit-")
    assert listed["names"] == [*names, "audit-manual"] and listed["latest"] == "audit-manual" and listed["count"] == 4
    assert act(env, tmp_path, "pubsub.list_snapshots", topic="audit-events")["count"] == 4
    assert act(env, tmp_path, "pubsub.list_snapshots", prefix="nothing-")["count"] == 0
    with pytest.raises(ActionError, match="No Pub/Sub snapshot matches nothing-"):
        act(env, tmp_path, "pubsub.list_snapshots", prefix="nothing-", required=True)

    # A dry run says what would go and deletes nothing.
    out = act(env, tmp_path, "pubsub.prune_snapshots", prefix="audit-", older_than="3d", dry_run=True)
    assert out == {"deleted": names[:2], "kept": [names[2], "audit-manual"], "dry_run": True}
    assert act(env, tmp_path, "pubsub.list_snapshots", prefix="audit-")["count"] == 4
    out = act(env, tmp_path, "pubsub.prune_snapshots", prefix="audit-", older_than="3d")
    assert out["deleted"] == names[:2] and out["kept"] == [names[2], "audit-manual"] and out["dry_run"] is False
    assert act(env, tmp_path, "pubsub.list_snapshots", prefix="audit-")["names"] == [names[2], "audit-manual"]
    # Everything matching is old: the newest is kept anyway.
    out = act(env, tmp_path, "pubsub.prune_snapshots", prefix="audit-snapshot-", older_than="12h")
    assert out["deleted"] == [] and out["kept"] == [names[2]]

    # Without a name timestamp or label, the age is expire_time - 7 days (the emulator keeps no labels).
    manual = next(
        s
        for s in psstore.client(env, pool=POOL).subscriber.list_snapshots(request={"project": f"projects/{PROJECT}"})
        if s.name.endswith("/audit-manual")
    )
    assert abs(snapshot_created(manual) - datetime.now(UTC)) < timedelta(minutes=1)


def test_stopped_emulator_is_one_sentence_and_retry_works(ps: PubSubEmulator, env: Environment, tmp_path: Path) -> None:
    Admin(ps.endpoint).pipeline("orders-events", "orders-events-dataflow")
    act(env, tmp_path, "pubsub.drain_count", idle_seconds=1)
    endpoint = ps.endpoint
    ps.stop()
    for name, params in (("pubsub.publish_events", {"count": 10}), ("pubsub.drain_count", {"idle_seconds": 1})):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            act(env, tmp_path, name, **params)
        assert time.monotonic() - started < 15, name  # a refused connection is not retried for a minute
        msg = str(info.value)
        assert (
            msg.startswith("Pub/Sub is not reachable while trying to")
            and "runbook sandbox status" in msg
            and "\n" not in msg
        )

    ps.start()
    ps.wait_ready()
    assert ps.endpoint == endpoint
    # The emulator is in memory: the topic and subscription are gone until recreated.
    Admin(ps.endpoint).pipeline("orders-events", "orders-events-dataflow")
    assert act(env, tmp_path, "pubsub.publish_events", count=20, id_prefix="R")["count"] == 20
    assert act(env, tmp_path, "pubsub.drain_count", idle_seconds=1)["event_ids"] == ids("R", 0, 20)
