"""The modal dialogs, one per module, loaded on first use (Textual's style).

They share one stylesheet, ``dialogs.tcss``, beside them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runbook.tui.lazy import lazy_exports

if TYPE_CHECKING:
    from runbook.tui.screens.dialogs.confirm import ConfirmScreen
    from runbook.tui.screens.dialogs.export import ExportScreen
    from runbook.tui.screens.dialogs.interrupted import InterruptedScreen
    from runbook.tui.screens.dialogs.key_choice import KeyChoiceScreen
    from runbook.tui.screens.dialogs.leave import LeaveScreen
    from runbook.tui.screens.dialogs.reason import ReasonScreen

# Exported name -> the module (in this package) that defines it.
MODULES = {
    "ConfirmScreen": "confirm",
    "ExportScreen": "export",
    "InterruptedScreen": "interrupted",
    "KeyChoiceScreen": "key_choice",
    "LeaveScreen": "leave",
    "ReasonScreen": "reason",
}

__all__ = ["ConfirmScreen", "ExportScreen", "InterruptedScreen", "KeyChoiceScreen", "LeaveScreen", "ReasonScreen"]

__getattr__ = lazy_exports(__name__, MODULES)
