"""``runbook.toml``: environments and their stores, playbook directories, notification settings.

Looked up in order: ``--config PATH``, ``./runbook.toml``, the platformdirs config directory.
With none, only the built-in ``sandbox`` environment exists. Example::

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.core.environment import Environment
from runbook.core.errors import UsageError

SECRET_KEYS = ("password", "token", "secret", "dsn", "webhook_url", "private_key")


@dataclass
class Config:
    path: Path | None = None
    default_env: str = "sandbox"
    playbook_dirs: list[str] = field(default_factory=list)
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    notify: dict[str, Any] = field(default_factory=dict)
    drill_days: dict[str, int] = field(default_factory=dict)

    def environment(self, name: str | None = None) -> Environment:
        """The named environment (``sandbox`` is built in).

        Raises:
            UsageError: Unknown environment name.
        """
        name = name or self.default_env
        if name == "sandbox" and "sandbox" not in self.environments:
            from runbook.sandbox.environment import sandbox_environment

            return sandbox_environment()
        if name not in self.environments:
            known = ", ".join(sorted({"sandbox", *self.environments}))
            where = f" in {self.path}" if self.path else ""
            raise UsageError(f"Unknown environment {name!r}{where}: known environments are {known}.")
        data = dict(self.environments[name])
        description = str(data.pop("description", ""))
        production = bool(data.pop("production", name in ("prod", "production")))
        stores = {k: dict(v) for k, v in data.items() if isinstance(v, dict)}
        if name == "sandbox":
            from runbook.sandbox.environment import sandbox_environment

            env = sandbox_environment()
            for k, v in stores.items():
                env.stores.setdefault(k, {}).update(v)
            return env
        return Environment(name=name, stores=stores, description=description, production=production)


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


def load_config(explicit: str | None = None) -> Config:
    """Read and check the config.

    Raises:
        UsageError: The file is not valid TOML, or holds a secret value instead of a variable name.
    """
    path = find_config(explicit)
    if path is None:
        return Config()
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read: {exc}.") from None
    known = {"default_env", "playbook_dirs", "environments", "notify", "drill_days"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))}).")
    envs = data.get("environments", {})
    if not isinstance(envs, dict):
        raise UsageError(f"{path}: [environments] must be a table of environments.")
    for env_name, env in envs.items():
        if not isinstance(env, dict):
            raise UsageError(f"{path}: environments.{env_name} must be a table.")
        for store, settings in env.items():
            if not isinstance(settings, dict):
                continue
            for key in settings:
                if any(s in key.lower() for s in SECRET_KEYS) and not key.endswith("_env"):
                    raise UsageError(
                        f"{path}: environments.{env_name}.{store}.{key} looks like a secret: put it in an "
                        f"environment variable and write {key}_env = \"VARIABLE_NAME\" instead."
                    )
    notify_cfg = data.get("notify", {})
    if isinstance(notify_cfg, dict):
        for channel, settings in notify_cfg.items():
            for key in settings if isinstance(settings, dict) else ():
                if any(x in key.lower() for x in SECRET_KEYS) and not key.endswith("_env"):
                    raise UsageError(
                        f"{path}: notify.{channel}.{key} looks like a secret: put it in an environment "
                        f"variable and write {key}_env = \"VARIABLE_NAME\" instead."
                    )
    dirs = data.get("playbook_dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise UsageError(f"{path}: playbook_dirs must be a list of paths.")
    base = path.parent
    return Config(
        path=path,
        default_env=str(data.get("default_env", "sandbox")),
        playbook_dirs=[str((base / d).expanduser()) if not Path(d).expanduser().is_absolute() else d for d in dirs],
        environments=envs,
        notify=data.get("notify", {}) if isinstance(data.get("notify", {}), dict) else {},
        drill_days=data.get("drill_days", {}) if isinstance(data.get("drill_days", {}), dict) else {},
    )
