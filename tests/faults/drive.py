"""Test driver: run or resume an incident headless in drill mode with automatic confirmations.

``python tests/faults/drive.py run PLAYBOOK`` / ``resume INCIDENT [--retry]``. Interrupted steps are
only retried when ``--retry`` is given (the test's explicit choice). RUNBOOK_HOME and
RUNBOOK_SANDBOX_DIR come from the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runbook.core.paths import home  # noqa: E402
from runbook.engine.runner import Engine  # noqa: E402
from runbook.headless import HeadlessAnswers, HeadlessFrontend  # noqa: E402
from runbook.journal.store import open_journal  # noqa: E402
from runbook.playbook.catalog import resolve  # noqa: E402
from runbook.playbook.validate import load  # noqa: E402
from runbook.sandbox.environment import sandbox_environment  # noqa: E402


def main(argv: list[str]) -> int:
    journal = open_journal()
    retry = "--retry" in argv
    answers = HeadlessAnswers(auto=True, interrupted="retry" if retry else None, quiet_output=True)
    engine = Engine(journal, HeadlessFrontend(answers), home=home(), environment=sandbox_environment())
    if argv[0] == "run":
        loaded = load(resolve(argv[1]))
        params = dict(loaded.playbook.scenario.params) if loaded.playbook.scenario else {}
        st = engine.open(loaded, params, mode="drill")
    else:
        st = engine.resume(argv[1])
    print(f"incident: {st.id}", flush=True)
    outcome = engine.run()
    print(f"outcome: {outcome.status}", flush=True)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
