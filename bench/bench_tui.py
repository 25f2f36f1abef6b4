"""TUI benchmarks: start-up to an interactive home screen, key latency and memory during a flood.

* Start-up: ``runbook`` (the real CLI entry, the real bundled playbooks, a fresh RUNBOOK_HOME)
  until the home screen has painted with its data loaded, against a hello-world Textual app;
  each started in a fresh subprocess, headless, exiting as soon as its first screen is ready.
  The child also checks that no heavy client (google, psycopg, slack, grpc) is imported by then.
* Key latency: while a step streams 200,000 lines for several seconds, open and close the note
  dialog by key presses; each sample runs from the key event (sent through the driver, as a
  terminal key press is) to the first frame painted of the changed screen (the dialog, or the
  run screen back; the frame is rendered to terminal bytes as a real terminal would need). p95
  against the same presses on an idle run screen in the same process.
* Memory: VmRSS of that process once the 200,000-line step has finished, against its VmRSS on
  the run screen before the step started; and the peak VmRSS of the incident's supervisor (the
  engine runs there; the TUI is its attached client, so the key latency is a client's).

Run ``python bench/bench_tui.py`` for a table; ``run()`` returns the rows.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import print_rows, row  # noqa: E402

HEAVY = ("google", "psycopg", "slack", "slack_sdk", "grpc")
LINES = 200_000

HELLO_CHILD = """
import sys, time
from textual.app import App
from textual.widgets import Static

class Hello(App):
    def compose(self):
        yield Static("Hello, world")

    def on_mount(self):
        def ready():
            sys.stderr.write("READY %r %r\\n" % (time.time(), time.process_time()))
            self.exit()

        self.call_after_refresh(ready)

Hello().run(headless=True)
"""

RUNBOOK_CHILD = """
import json, sys, time
import runbook.tui.app as tui_app
from runbook.tui.screens.home import HomeScreen

seen = {}
original = HomeScreen.on_home_loaded

def loaded(self, message):
    original(self, message)

    def ready():
        seen["ready"] = "%r %r" % (time.time(), time.process_time())
        seen["heavy"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY})
        seen["options"] = self.query_one("#home-list").option_count
        self.app.exit()

    self.call_after_refresh(ready)

HEAVY = __HEAVY__
HomeScreen.on_home_loaded = loaded
tui_app._run = lambda app: app.run(headless=True)
sys.argv = ["runbook"]
from runbook.entry import main
try:
    main()
finally:
    sys.stderr.write("READY %s\\n" % seen.get("ready"))
    sys.stderr.write("RESULT " + json.dumps(seen) + "\\n")
""".replace("__HEAVY__", repr(HEAVY))


def _env(home: str) -> dict[str, str]:
    env = dict(os.environ, RUNBOOK_HOME=home, RUNBOOK_CONFIG_DIR=str(Path(home) / "config"), TERM="xterm-256color")
    env.pop("RUNBOOK_PLAYBOOKS", None)
    env.pop("NO_COLOR", None)
    return env


def bench_startup(repeat: int = 15) -> dict[str, Any]:
    """Wall time from spawning the process to the first screen ready (reported by the child)."""
    with tempfile.TemporaryDirectory() as home:
        env = _env(home)

        def child(code: str) -> tuple[float, float, str]:
            t0 = time.time()
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
            )
            if done.returncode != 0:
                raise RuntimeError(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
            ready, cpu = next(ln for ln in done.stderr.splitlines() if ln.startswith("READY "))[6:].split()
            return float(ready) - t0, float(cpu), done.stderr

        # Warm the file cache and byte-code once for both.
        child(HELLO_CHILD)
        _, _, err = child(RUNBOOK_CHILD)
        result = json.loads(next(ln for ln in err.splitlines() if ln.startswith("RESULT "))[7:])
        assert result.get("options", 0) > 0, f"the home screen listed nothing: {result}"
        heavy = result.get("heavy", [])
        hello_runs, ours_runs = [], []
        for _ in range(repeat):  # interleaved: a busy machine slows both alike
            hello_runs.append(child(HELLO_CHILD)[:2])
            ours_runs.append(child(RUNBOOK_CHILD)[:2])
    hello, ours = statistics.median(r[0] for r in hello_runs), statistics.median(r[0] for r in ours_runs)
    cpu_ratio = statistics.median(r[1] for r in ours_runs) / statistics.median(r[1] for r in hello_runs)
    ratio = ours / hello
    passed = ratio <= 1.25 and not heavy
    note = (
        f"hello-world Textual app {hello * 1000:.0f} ms "
        f"(medians of {repeat} interleaved runs; CPU time {cpu_ratio:.2f}×); "
        f"heavy clients imported at home: {', '.join(heavy) or 'none'}"
    )
    return row(
        "TUI start to interactive home (headless, fresh process)",
        f"{ours * 1000:.0f} ms",
        "≤ 1.25× hello world",
        ratio,
        passed,
        note,
    )


# -- flood: key latency and memory (runs in a child process so RSS is the TUI's) -------------------

FLOOD_CODE = (
    "import sys\n"
    "w = sys.stdout.write\n"
    "import time\n"
    "n = int(sys.argv[1]); chunk = 2500\n"
    "for start in range(0, n, chunk):\n"
    "    w(''.join(f'{i:06d} restored object tenant-acme/file-{i:06d}.bin ok sha256 verified\\n'"
    " for i in range(start + 1, min(n, start + chunk) + 1)))\n"
    "    sys.stdout.flush()\n"
    "    time.sleep(0.08)\n"
)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _supervisor_memory() -> tuple[float, float]:
    """Peak and current VmRSS (MB) of the incident's supervisor (the engine streaming the lines)."""
    import psutil

    sup = next(c for c in psutil.Process().children() if "supervise" in c.cmdline())
    fields = {}
    with open(f"/proc/{sup.pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    return fields["VmHWM"], fields["VmRSS"]


def _flood_child() -> None:
    import asyncio

    tmp = Path(tempfile.mkdtemp(prefix="runbook-bench-tui-"))
    home = tmp / "home"
    home.mkdir()
    os.environ.update(RUNBOOK_HOME=str(home), RUNBOOK_CONFIG_DIR=str(tmp / "config"))
    os.environ.pop("RUNBOOK_PLAYBOOKS", None)
    pb = tmp / "flood.yaml"
    pb.write_text(
        "id: flood\ntitle: Floods output\ntier: maintenance\nnot_drillable: a benchmark\nsteps:\n"
        f"  - id: flood\n    title: Print {LINES} lines\n"
        f"    shell: {json.dumps([sys.executable, '-c', FLOOD_CODE, str(LINES)])}\n    effect: read-only\n"
        "  - id: after\n    title: After the flood\n    shell: [echo, done]\n    effect: read-only\n"
    )

    from runbook.journal.store import Journal
    from runbook.playbook.validate import load
    from runbook.sandbox.environment import with_sandbox
    from runbook.stores.config import load_config
    from runbook.tui.app import RunbookApp, TuiContext, run_screen_for_new
    from runbook.tui.screens.dialogs import ReasonScreen
    from runbook.tui.screens.run import RunScreen

    journal = Journal(home / "journal.sqlite3", actor="bench@host")
    ctx = TuiContext(load_config(local=with_sandbox()), journal, home=home, dirs=[tmp])
    loaded = load(pb)
    assert not loaded.diagnostics, loaded.diagnostics
    env = ctx.config.environment("sandbox")
    app = RunbookApp(ctx, start=lambda a: run_screen_for_new(ctx, loaded, {}, env, "live"), cursor_blink=False)
    out: dict[str, Any] = {}

    async def until(pilot: Any, cond: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            await pilot.pause(0.02)
        raise RuntimeError("timed out")

    frames: list[tuple[float, Any]] = []
    original_display = app._display

    def display(screen: Any, renderable: Any) -> None:
        # Headless apps skip the terminal write: produce the bytes anyway (the cost a real
        # terminal pays), then note when a frame of which screen went out.
        original_display(screen, renderable)
        if renderable is not None:
            try:
                renderable.render_segments(app.console)
            except AttributeError:
                pass
            frames.append((time.perf_counter(), screen))

    app._display = display  # type: ignore[method-assign]

    async def key_to_frame(key: str, shows: Any) -> float:
        """Send ``key`` as the terminal driver does; wait for the first frame of the screen ``shows()`` picks."""
        from textual import events

        frames.clear()
        t0 = time.perf_counter()
        event = events.Key(key, key if len(key) == 1 else None)
        app._driver.send_message(event)
        deadline = t0 + 10
        while True:
            for ts, screen in frames:
                if shows(screen):
                    return ts - t0
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no frame after {key!r}")
            await asyncio.sleep(0.001)

    async def sample(pilot: Any, scr: RunScreen) -> list[float]:
        opened = await key_to_frame("n", lambda s: isinstance(s, ReasonScreen))
        await until(pilot, lambda: isinstance(app.screen, ReasonScreen))
        closed = await key_to_frame("escape", lambda s: s is scr)
        await until(pilot, lambda: app.screen is scr)
        return [opened, closed]

    async def drive() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            scr = next(s for s in app.screen_stack if isinstance(s, RunScreen))
            await until(pilot, lambda: scr.pending is not None and scr.pending.request.step == "flood")
            out["rss_before"] = _rss_mb()
            await pilot.press("r")
            await until(pilot, lambda: scr._output_lines > 0)
            flood: list[float] = []
            t_start = time.monotonic()
            while scr.running_step == "flood":
                flood += await sample(pilot, scr)
                await pilot.pause(0.05)
            out["flood_seconds"] = time.monotonic() - t_start
            await until(pilot, lambda: scr.pending is not None and scr.pending.request.step == "after")
            out["lines_seen"] = scr._output_lines
            out["supervisor_peak"], out["supervisor_rss"] = _supervisor_memory()
            out["samples_during_flood"] = len(flood)
            out["flood"] = flood
            # Let the step's objects go (as the operator would keep working).
            import gc

            gc.collect()
            await pilot.pause(0.3)
            out["rss_after"] = _rss_mb()
            out["peak"] = _peak_mb()
            # Baseline: the same presses on the idle run screen (the next step's question).
            idle: list[float] = []
            for _ in range(30):
                idle += await sample(pilot, scr)
                await pilot.pause(0.05)
            out["idle"] = idle
            await pilot.press("q")
            await until(pilot, lambda: scr.ended is not None)

    try:
        asyncio.run(drive())
    finally:
        journal.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT " + json.dumps(out))
    if os.environ.get("BENCH_TUI_DEBUG"):
        print([round(x * 1000) for x in out["flood"]], [round(x * 1000) for x in out["idle"]], file=sys.stderr)


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def bench_flood() -> list[dict[str, Any]]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--flood-child"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flood child failed ({done.returncode}): {done.stderr[-3000:]}")
    res = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    flood_p95 = p95(res["flood"])
    idle_p95 = p95(res["idle"])
    latency = row(
        f"key → screen latency while a step streams {LINES:,} lines (p95)",
        f"{flood_p95 * 1000:.0f} ms",
        "< 100 ms",
        flood_p95 / idle_p95 if idle_p95 else None,
        flood_p95 < 0.1 and res["lines_seen"] == LINES,
        f"idle p95 {idle_p95 * 1000:.0f} ms; {res['samples_during_flood']} presses over {res['flood_seconds']:.1f} s, "
        f"median {statistics.median(res['flood']) * 1000:.0f} ms, max {max(res['flood']) * 1000:.0f} ms",
    )
    memory = row(
        f"TUI memory after a {LINES:,}-line step (VmRSS)",
        f"{res['rss_after']:.0f} MB",
        "< 150 MB",
        res["rss_after"] / res["rss_before"],
        res["rss_after"] < 150,
        f"run screen before the step {res['rss_before']:.0f} MB; peak {res['peak']:.0f} MB",
    )
    supervisor = row(
        f"supervisor memory while streaming {LINES:,} lines to an attached client (peak VmRSS)",
        f"{res['supervisor_peak']:.0f} MB",
        "< 100 MB",
        None,
        res["supervisor_peak"] < 100,
        f"after the step {res['supervisor_rss']:.0f} MB; the TUI is a client of it (key latency above)",
    )
    return [latency, memory, supervisor]


def run() -> list[dict[str, Any]]:
    return [bench_startup(), *bench_flood()]


if __name__ == "__main__":
    if "--flood-child" in sys.argv:
        _flood_child()
    else:
        print_rows(run())
