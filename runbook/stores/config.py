"""``runbook.toml``: environments and their stores, playbook directories, notification settings.

Looked up in order: ``--config PATH``, ``./runbook.toml``, the platformdirs config directory.
With none, only the built-in environments exist (the ``sandbox``, which the command line
registers). Example::

    playbook_dirs = ["/srv/runbooks"]
    default_env = "prod"

    [environments.prod]
    description = "Production"
    production = true
    [environments.prod.postgres]
    host = "db.internal"
    port = 5432
    user = "varlor_prod"
    database = "varlor"
    password_env = "VARLOR_DB_PASSWORD"   # the variable's name, never the password
    [environments.prod.storage]
    root = "/var/www/varlor/storage/datasets"
    backups = "/var/backups/varlor"

The file is checked against :mod:`runbook.stores.settings` (unknown keys and wrong types are
errors, nothing is coerced); every problem is reported as ``file:line: message``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.core.environment import Environment, LocalEnvironment
from runbook.core.errors import UsageError


@dataclass
class Config:
    """The checked configuration, as plain data, plus the built-in local environments.

    Attributes:
        path: The file it came from (None: no file).
        default_env: The environment used when none is named.
        playbook_dirs: Extra playbook directories (absolute).
        environments: Name → ``{"description", "production", <store>: {settings}}``.
        notify: ``{"slack": {settings}}``: defaults for every environment.
        drill_days: Overdue thresholds by level (``level1``…, ``default``).
        local: Built-in environments that run on this machine (the sandbox), by name.
    """

    path: Path | None = None
    default_env: str = "sandbox"
    playbook_dirs: list[str] = field(default_factory=list)
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)
    drill_days: dict[str, float] = field(default_factory=dict)
    local: dict[str, LocalEnvironment] = field(default_factory=dict)

    def environment(self, name: str | None = None) -> Environment:
        """The named environment (a built-in one, overlaid by the file's settings of that name).

        Raises:
            UsageError: Unknown environment name.
        """
        name = name or self.default_env
        data = self.environments.get(name)
        if name in self.local:
            env = self.local[name].environment()
            for kind, settings in (data or {}).items():
                if isinstance(settings, dict):
                    env.stores.setdefault(kind, {}).update(settings)
            return env
        if data is None:
            known = ", ".join(sorted({*self.local, *self.environments}))
            where = f" in {self.path}" if self.path else ""
            raise UsageError(f"Unknown environment {name!r}{where}: known environments are {known}.")
        production = data.get("production")
        return Environment(
            name=name,
            stores={k: dict(v) for k, v in data.items() if isinstance(v, dict)},
            description=str(data.get("description", "")),
            production=name in ("prod", "production") if production is None else bool(production),
        )

    def environment_names(self) -> list[str]:
        return sorted({*self.local, *self.environments})


def find_config(explicit: str | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"Config file not found: {explicit}.")
        return path
    local = Path.cwd() / "runbook.toml"
    if local.is_file():
        return local
    from runbook.core.paths import config_dir

    user = config_dir() / "runbook.toml"
    return user if user.is_file() else None


def load_config(explicit: str | None = None, *, local: Mapping[str, LocalEnvironment] | None = None) -> Config:
    """Read and check the config.

    Args:
        explicit: ``--config PATH``.
        local: Built-in environments to offer (the command line passes the sandbox).

    Raises:
        UsageError: ``file:line: message`` for the first problem (invalid TOML, an unknown key, a
            wrong type, a secret written as a value).
    """
    path = find_config(explicit)
    if path is None:
        return Config(local=dict(local or {}))
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise UsageError(f"{path}:{line}: not valid TOML: {getattr(exc, 'msg', exc)}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read: {exc}.") from None
    model = _check(data, path, text)
    base = path.parent
    return Config(
        path=path,
        default_env=model.default_env,
        playbook_dirs=[
            d if Path(d).expanduser().is_absolute() else str((base / d).expanduser()) for d in model.playbook_dirs
        ],
        environments={name: _environment_data(env) for name, env in model.environments.items()},
        notify={"slack": model.notify.slack.model_dump(exclude_unset=True)} if model.notify.slack else {},
        drill_days=dict(model.drill_days),
        local=dict(local or {}),
    )


def _environment_data(env: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": env.description}
    if env.production is not None:
        out["production"] = env.production
    out.update(env.stores())
    return out


def _check(data: dict[str, Any], path: Path, text: str) -> Any:
    from pydantic import ValidationError

    from runbook.stores.settings import ConfigFile, looks_secret

    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err.get("loc", ()))
        where = f"{path}:{line_of(text, loc)}"
        dotted = ".".join(loc) or "the file"
        if err["type"] == "extra_forbidden" and loc and looks_secret(loc[-1]):
            raise UsageError(
                f"{where}: {dotted} looks like a secret: put it in an environment variable and write "
                f'{loc[-1]}_env = "VARIABLE_NAME" instead.'
            ) from None
        if err["type"] == "extra_forbidden":
            raise UsageError(f"{where}: unknown setting {dotted}.") from None
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        raise UsageError(f"{where}: {dotted}: {message}.") from None


def _line_from_message(message: str) -> int:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else 1


def line_of(text: str, loc: tuple[str, ...]) -> int:
    """The line of ``text`` (TOML) where the setting at ``loc`` is written (best effort; else 1).

    Looks for the deepest ``[table]`` header that is a prefix of ``loc``, then for the key under
    it (also as a dotted key); a table itself is found by its header.
    """
    lines = text.splitlines()
    header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
    best: tuple[int, int] = (0, 0)  # (prefix length, index of the header line + 1)
    for i, raw in enumerate(lines):
        m = header.match(raw)
        if not m:
            continue
        parts = tuple(p.strip().strip('"') for p in m.group(1).split("."))
        if parts == loc[: len(parts)] and len(parts) > best[0]:
            best = (len(parts), i + 1)
    depth, start = best
    rest = loc[depth:]
    if not rest:
        return start or 1
    key = re.compile(r"^\s*" + r"\s*\.\s*".join(re.escape(p) for p in rest[:1]) + r"\s*[.=]")
    for i in range(start, len(lines)):
        if i > start and header.match(lines[i]):
            break
        if key.match(lines[i]):
            return i + 1
    return start or 1
