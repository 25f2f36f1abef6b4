"""Finding playbooks: by id in the playbook directories, or by path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.core.errors import UsageError
from runbook.core.paths import bundled_playbooks


def playbook_dirs(extra: list[str] | None = None) -> list[Path]:
    """Directories searched for playbooks, first match wins.

    ``RUNBOOK_PLAYBOOKS`` (path list), the configured ``playbook_dirs``, ``./playbooks`` and the
    bundled ``playbooks/``.
    """
    dirs: list[Path] = []
    env = os.environ.get("RUNBOOK_PLAYBOOKS")
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs += [Path(p).expanduser() for p in (extra or [])]
    local = Path.cwd() / "playbooks"
    if local.is_dir():
        dirs.append(local)
    dirs.append(bundled_playbooks())
    out: list[Path] = []
    for d in dirs:
        try:
            resolved = d.resolve()
        except OSError:
            continue
        if resolved not in out and resolved.is_dir():
            out.append(resolved)
    return out


def playbook_files(dirs: list[Path] | None = None) -> list[Path]:
    """Every playbook file, one per id (earlier directories shadow later ones)."""
    seen: dict[str, Path] = {}
    for d in dirs if dirs is not None else playbook_dirs():
        for p in sorted(d.glob("*.y*ml")):
            if p.suffix in (".yaml", ".yml") and p.stem not in seen:
                seen[p.stem] = p
    return sorted(seen.values(), key=lambda p: p.stem)


def resolve(ref: str, dirs: list[Path] | None = None) -> Path:
    """A playbook id or path → its file.

    Raises:
        UsageError: No such playbook (one sentence listing where we looked).
    """
    if ref.endswith((".yaml", ".yml")) or os.sep in ref:
        path = Path(ref).expanduser()
        if not path.is_file():
            raise UsageError(f"Playbook file not found: {ref}.")
        return path
    for d in dirs if dirs is not None else playbook_dirs():
        for suffix in (".yaml", ".yml"):
            p = d / f"{ref}{suffix}"
            if p.is_file():
                return p
    raise UsageError(f"No playbook named {ref!r}: run `runbook list` to see the playbooks.")


@dataclass
class Summary:
    """What ``runbook list`` shows, read without full validation (fast)."""

    id: str
    path: Path
    title: str
    tier: str
    level: int | None
    rto: str | None
    rpo: str | None
    steps: int
    drillable: bool
    error: str | None = None
    drill_every: Any = None


def summarize(path: Path) -> Summary:
    from runbook.playbook import yamlload

    try:
        raw: Any = yamlload.load_file(path)
    except yamlload.YamlError as exc:
        return Summary(path.stem, path, "", "", None, None, None, 0, False, f"{path}:{exc.line}: {exc}")
    if not isinstance(raw, dict):
        return Summary(path.stem, path, "", "", None, None, None, 0, False, f"{path}: not a playbook")
    steps = raw.get("steps")
    return Summary(
        id=str(raw.get("id", path.stem)),
        path=path,
        title=str(raw.get("title", "")),
        tier=str(raw.get("tier", "")),
        level=raw.get("level") if isinstance(raw.get("level"), int) else None,
        rto=str(raw["rto"]) if raw.get("rto") is not None else None,
        rpo=str(raw["rpo"]) if raw.get("rpo") is not None else None,
        steps=len(steps) if isinstance(steps, list) else 0,
        drillable=isinstance(raw.get("scenario"), dict),
        drill_every=raw.get("drill_every"),
    )


def step_headings(text: str) -> dict[str, tuple[str, bool | str]]:
    """Step id -> (title or "", notify) from a playbook's YAML text (as journaled with an incident).

    For reports and notifications: a text that no longer parses gives no titles rather than an error.
    """
    if not text:
        return {}
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - titles are a nicety
        return {}
    steps = data.get("steps") if isinstance(data, dict) else None
    out: dict[str, tuple[str, bool | str]] = {}
    for s in steps if isinstance(steps, list) else []:
        if isinstance(s, dict) and isinstance(s.get("id"), str):
            out[s["id"]] = (str(s.get("title") or ""), s.get("notify") or False)
    return out
