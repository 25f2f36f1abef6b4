"""The TUI's own widgets, one per module, loaded on first use (Textual's style).

``from runbook.tui.widgets import ModeBar`` imports only ``mode_bar``: a screen pays for the
widgets it uses, and the home screen (which uses none of these) for nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.tui.lazy import lazy_exports

if TYPE_CHECKING:
    from runbook.tui.widgets.mode_bar import ModeBar
    from runbook.tui.widgets.prompt import Prompt
    from runbook.tui.widgets.radio_choice import RadioChoice
    from runbook.tui.widgets.step_list import StepList

# Exported name -> the module (in this package) that defines it.
MODULES = {
    "ModeBar": "mode_bar",
    "Prompt": "prompt",
    "RadioChoice": "radio_choice",
    "StepList": "step_list",
}

__all__ = ["ModeBar", "Prompt", "RadioChoice", "StepList"]

__getattr__ = lazy_exports(__name__, MODULES)
