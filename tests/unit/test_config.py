"""runbook.toml is checked by typed models: unknown keys and wrong types are refused (nothing is
coerced), secrets are only variable names, and every problem is one ``file:line: message``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runbook.core.environment import Environment
from runbook.core.errors import UsageError
from runbook.stores.config import load_config

GOOD = """\
default_env = "prod"
playbook_dirs = ["extra"]

[drill_days]
level1 = 14

[notify.slack]
channel = "#incidents"
token_env = "SLACK_BOT_TOKEN"

[environments.prod]
description = "Production"
production = true

[environments.prod.postgres]
host = "db.internal"
port = 5433
user = "varlor_prod"
database = "varlor"
password_env = "VARLOR_DB_PASSWORD"

[environments.prod.gcp]
project = "shop-prod"
region = "us-central1"
secondary_region = "europe-west1"
dataset_europe_west1 = "ecommerce_eu"

[environments.staging.storage]
root = "/srv/storage"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runbook.toml"
    path.write_text(text)
    return path


def problem(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_config(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    return message.removeprefix(f"{path}:")


def test_a_good_config_gives_plain_environments(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path, GOOD)))
    prod = cfg.environment()
    assert prod.name == "prod" and prod.production and prod.description == "Production"
    assert prod.stores["postgres"] == {
        "host": "db.internal",
        "port": 5433,
        "user": "varlor_prod",
        "database": "varlor",
        "password_env": "VARLOR_DB_PASSWORD",
    }
    assert prod.stores["gcp"]["dataset_europe_west1"] == "ecommerce_eu"
    assert cfg.playbook_dirs == [str(tmp_path / "extra")] and cfg.drill_days == {"level1": 14}
    assert cfg.notify == {"slack": {"channel": "#incidents", "token_env": "SLACK_BOT_TOKEN"}}
    staging = cfg.environment("staging")
    assert not staging.production and staging.stores == {"storage": {"root": "/srv/storage"}}


def test_an_unknown_key_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace('user = "varlor_prod"', 'user = "varlor_prod"\nusername = "oops"')
    line = text.splitlines().index('username = "oops"') + 1
    assert problem(tmp_path, text) == f"{line}: unknown setting environments.prod.postgres.username."


def test_nothing_is_coerced(tmp_path: Path) -> None:
    text = GOOD.replace("port = 5433", 'port = "5433"')
    line = text.splitlines().index('port = "5433"') + 1
    message = problem(tmp_path, text)
    assert message.startswith(f"{line}: environments.prod.postgres.port: "), message
    assert "integer" in message


def test_a_secret_value_is_refused_with_the_fix(tmp_path: Path) -> None:
    text = GOOD.replace('password_env = "VARLOR_DB_PASSWORD"', 'password = "hunter22"')
    line = text.splitlines().index('password = "hunter22"') + 1
    message = problem(tmp_path, text)
    assert message.startswith(f"{line}: environments.prod.postgres.password looks like a secret"), message
    assert 'password_env = "VARIABLE_NAME"' in message and "hunter22" not in message


def test_a_variable_name_must_look_like_one(tmp_path: Path) -> None:
    message = problem(tmp_path, GOOD.replace('token_env = "SLACK_BOT_TOKEN"', 'token_env = "xoxb-123 456"'))
    assert "notify.slack.token_env" in message and "xoxb" not in message.split(":", 1)[0]


def test_an_unknown_regional_gcp_key_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, GOOD.replace("dataset_europe_west1", "dataset_asia_east1"))
    assert "dataset_asia_east1" in message and "per-region setting" in message


def test_invalid_toml_names_its_line(tmp_path: Path) -> None:
    message = problem(tmp_path, 'default_env = "prod"\n[environments.prod\n')
    assert message.startswith("2: not valid TOML"), message


def test_a_local_environment_is_overlaid_by_the_file(tmp_path: Path) -> None:
    class Local:
        def environment(self) -> Environment:
            return Environment("sandbox", stores={"storage": {"root": "/a", "backups": "/b"}}, sandbox=True)

        def status(self) -> str:
            return "up"

        def ensure(self, playbook: object) -> None:
            return None

    cfg = load_config(
        str(write(tmp_path, '[environments.sandbox.storage]\nroot = "/mine"\n')), local={"sandbox": Local()}
    )
    env = cfg.environment("sandbox")
    assert env.sandbox and env.stores["storage"] == {"root": "/mine", "backups": "/b"}
    with pytest.raises(UsageError, match="Unknown environment 'nope'.*known environments are sandbox"):
        cfg.environment("nope")


def test_the_cli_prints_one_sentence_for_a_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port = 5433", "port = 70000"))
    r = subprocess.run(
        [sys.executable, "-m", "runbook", "--config", str(path), "plan", "db-backup", "--env", "prod"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and f"{path}:" in r.stderr and "port" in r.stderr


def test_careless_values_are_refused_not_guessed(tmp_path: Path) -> None:
    """`production = "no"` was once read as true, `default_env = 5` accepted, `hots` ignored."""
    for old, new, where in (
        ("production = true", 'production = "no"', "environments.prod.production: "),
        ('default_env = "prod"', "default_env = 5", "default_env: "),
        ('host = "db.internal"', 'hots = "db.internal"', "unknown setting environments.prod.postgres.hots"),
    ):
        text = GOOD.replace(old, new)
        line = text.splitlines().index(new) + 1
        message = problem(tmp_path, text)
        assert message.startswith(f"{line}: ") and where in message, (new, message)


def test_any_environment_can_be_marked_production(tmp_path: Path) -> None:
    text = GOOD + '\n[environments.live-eu]\nproduction = true\n\n[environments.prod-like]\nproduction = false\n'
    cfg = load_config(str(write(tmp_path, text)))
    assert cfg.environment("live-eu").production and not cfg.environment("prod-like").production
