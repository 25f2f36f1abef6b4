"""The command palette provider: the actions of the current screen, as commands."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class RunbookCommands(Provider):
    """Offers what the current screen can do now (run step, skip, note, timeline, quit…)."""

    def _commands(self) -> list[tuple[str, str, str]]:
        screen = self.screen
        # The palette is itself a screen: look at the screen below it.
        stack = self.app.screen_stack
        for s in reversed(stack):
            if hasattr(s, "palette_commands"):
                screen = s
                break
        get = getattr(screen, "palette_commands", None)
        return [(label, help_, action) for label, help_, action in (get() if get else [])] if get else []

    def _runner(self, action: str):  # noqa: ANN202 - a callback
        stack = self.app.screen_stack
        target = next((s for s in reversed(stack) if hasattr(s, "palette_commands")), None)
        return partial(self.app.run_action, action, target) if target is not None else (lambda: None)

    async def discover(self) -> Hits:
        for label, help_, action in self._commands():
            yield DiscoveryHit(label, self._runner(action), help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for label, help_, action in self._commands():
            score = matcher.match(label)
            if score > 0:
                yield Hit(score, matcher.highlight(label), self._runner(action), help=help_)
