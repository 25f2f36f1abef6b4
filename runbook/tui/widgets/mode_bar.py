"""The mode bar: where and how the incident runs (LIVE, DRILL, DRY-RUN · env), and the RTO clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

MODE_LABEL = {"live": "LIVE", "drill": "DRILL", "dry-run": "DRY-RUN"}


def clock(seconds: float) -> str:
    """``seconds`` as ``M:SS`` or ``H:MM:SS``."""
    s = int(max(0, seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def now_utc(app: Any) -> datetime:
    """The app's clock (tests and screenshots inject a fixed one)."""
    fn = getattr(app, "now", None)
    return fn() if callable(fn) else datetime.now(UTC)


class ModeBar(Static):
    """One line that says, unmistakably, where and how the incident runs, and the RTO clock.

    A live incident is red and says ``LIVE``; a drill is blue and says ``DRILL``; a dry run is
    green and says ``DRY-RUN``. Without colours the words still say it.
    """

    DEFAULT_CSS = """
    ModeBar { height: 1; dock: top; background: $panel; color: $text; }
    ModeBar.-live { background: red; color: white; text-style: bold; }
    ModeBar.-drill { background: blue; color: white; }
    ModeBar.-dry-run { background: green; color: black; }
    ModeBar.-exceeded { text-style: bold reverse; }
    """

    mode: reactive[str] = reactive("")
    env: reactive[str] = reactive("")
    subtitle: reactive[str] = reactive("")

    def __init__(
        self, *, mode: str = "", env: str = "", production: bool = False, subtitle: str = "", id: str | None = None
    ) -> None:
        """Create the bar.

        Args:
            mode: live, drill or dry-run (empty: no incident yet).
            env: Environment name.
            production: Whether the environment is production (said in words too).
            subtitle: What is open (playbook, incident id).
            id: Widget id.
        """
        super().__init__(id=id)
        self.production = production
        self.opened: datetime | None = None
        self.closed: datetime | None = None
        self.rto: float | None = None
        self.set_reactive(ModeBar.mode, mode)
        self.set_reactive(ModeBar.env, env)
        self.set_reactive(ModeBar.subtitle, subtitle)
        self._sync_classes()

    def on_mount(self) -> None:
        """Tick once a second for the RTO clock."""
        self.set_interval(1.0, self.refresh)

    def set_times(self, opened: str | None, closed: str | None, rto: float | None) -> None:
        """Update the incident's start, end and RTO target (ISO timestamps)."""
        self.opened = datetime.fromisoformat(opened) if opened else None
        self.closed = datetime.fromisoformat(closed) if closed else None
        self.rto = rto
        self.refresh()

    def watch_mode(self) -> None:
        self._sync_classes()

    def _sync_classes(self) -> None:
        for m in ("live", "drill", "dry-run"):
            self.set_class(self.mode == m, f"-{m}")

    def elapsed(self) -> float | None:
        """Seconds since the incident opened (to its close when closed)."""
        if self.opened is None:
            return None
        end = self.closed or now_utc(self.app)
        return max(0.0, (end - self.opened).total_seconds())

    def clock_text(self, compact: bool = False) -> Text:
        """``3:12 / RTO 15:00 · 11:48 left`` or ``⚠ RTO 15:00 EXCEEDED by 2:00``.

        Compact (narrow terminals): ``RTO 11:48 left`` or ``⚠ RTO EXCEEDED +2:00``.
        """
        el = self.elapsed()
        if el is None:
            return Text("")
        if not self.rto:
            return Text(f"elapsed {clock(el)}")
        left = self.rto - el
        exceeded = left < 0
        self.set_class(exceeded, "-exceeded")
        if exceeded:
            if compact:
                return Text(f"⚠ RTO EXCEEDED +{clock(-left)}", style="bold")
            return Text(f"⚠ RTO {clock(self.rto)} EXCEEDED by {clock(-left)}", style="bold")
        if compact:
            return Text(f"RTO {clock(left)} left")
        return Text(f"{clock(el)} / RTO {clock(self.rto)} · {clock(left)} left")

    def render(self) -> Table:
        label = MODE_LABEL.get(self.mode, "")
        env = self.env + (" (PRODUCTION)" if self.production and self.mode != "dry-run" else "")
        left = Text()
        if label:
            left.append(f" {label} · {env} ", style="bold reverse" if self.mode == "live" else "bold")
        elif self.env:
            left.append(f" env {env} ", style="bold")
        if self.subtitle:
            left.append(f" {self.subtitle}")
        right = self.clock_text()
        if right and left.cell_len + right.cell_len + 2 > self.size.width:
            right = self.clock_text(compact=True)
        grid = Table.grid(expand=True, padding=(0, 1, 0, 0))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(left, right)
        return grid
