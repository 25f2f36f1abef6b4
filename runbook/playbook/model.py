"""The playbook format as typed data (pydantic), also the source of the shipped JSON Schema.

Structure only: references, actions and confirmation policy are checked in ``validate.py``,
which turns every problem into ``file:line: message``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runbook.core.durations import check_duration, parse_duration
from runbook.core.effect import Effect

IDENT = r"^[a-z][a-z0-9_]{0,63}$"  # step ids and param names: usable in references and conditions
PLAYBOOK_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Tier(StrEnum):
    COMPONENT = "component"
    REGIONAL = "regional"
    FULL_LOSS = "full-loss"
    DATA_LOSS = "data-loss"
    SECURITY = "security"
    MAINTENANCE = "maintenance"


class ParamType(StrEnum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    PATH = "path"
    IDENTIFIER = "identifier"
    ENUM = "enum"
    DURATION = "duration"
    TIMESTAMP = "timestamp"


class Mode(StrEnum):
    LIVE = "live"
    DRY_RUN = "dry-run"
    DRILL = "drill"


Duration = Annotated[str | int | float, Field(description="Seconds, or a duration like 30s, 15m, 1h, 30d.")]


def _duration(value: Any) -> Any:
    return check_duration(value)


class ParamSpec(Strict):
    """One parameter of a playbook."""

    type: ParamType = ParamType.STRING
    required: bool = False
    default: Any = None
    pattern: str | None = Field(None, description="Regular expression the whole value must match.")
    choices: list[str] | None = Field(None, description="Allowed values of an enum parameter.")
    min: int | None = None
    max: int | None = None
    help: str | None = None
    secret: bool = Field(False, description="Never journaled, logged, exported or shown.")


class OutputSpec(Strict):
    """A value captured from a step for later steps: from the output text or an action output."""

    source: Literal["stdout", "last_line", "exit_code"] | str = Field(
        "stdout", alias="from", description="stdout, last_line, exit_code, or the name of an action output."
    )
    regex: str | None = Field(None, description="First group (or whole match) of the last matching line.")


class ConfirmTyped(Strict):
    typed: str = Field(description="The exact value the operator must type (templates allowed).")


ConfirmLevel = Literal["none", "yes", "typed"]


class Step(Strict):
    """One unit of a playbook: exactly one of ``run``, ``shell`` or ``manual``."""

    id: str = Field(pattern=IDENT)
    title: str | None = None
    phase: str | None = None
    description: str | None = Field(None, description="Markdown shown to the operator.")
    run: str | None = Field(None, description="Action name, e.g. postgres.dump.")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    shell: list[str] | None = Field(None, description="argv list; values never pass through a shell.")
    manual: bool = False
    effect: Effect | None = Field(None, description="For shell steps: read-only, mutating or destructive.")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for shell steps.")
    confirm: ConfirmLevel | ConfirmTyped | None = None
    when: str | None = Field(None, description="Condition; the step is skipped when it is false.")
    timeout: Duration | None = None
    retries: int = Field(0, ge=0, le=20)
    retry_delay: Duration = "2s"
    on_failure: Literal["stop", "continue", "ask"] = "stop"
    notify: bool | str = False
    outputs: dict[str, OutputSpec | str] = Field(default_factory=dict)

    _v_timeout = field_validator("timeout", "retry_delay")(_duration)

    @field_validator("confirm", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: Any) -> Any:
        # YAML 1.1 reads `confirm: yes` as True and `confirm: no` as False.
        if v is True:
            return "yes"
        if v is False:
            return "none"
        return v

    @property
    def kind(self) -> str:
        if self.run:
            return "action"
        if self.shell is not None:
            return "shell"
        return "manual"

    @property
    def label(self) -> str:
        return self.title or self.id


class Scenario(Strict):
    """How ``runbook drill`` breaks the sandbox before running the playbook, and checks it after."""

    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="Params bound for the drill run.")
    setup: list[Step] = Field(default_factory=list, description="Run before breaking (e.g. take a backup).")
    break_: list[Step] = Field(default_factory=list, alias="break", description="What the drill destroys.")
    verify: list[Step] = Field(default_factory=list, description="Checks after the run: the data came back.")
    rto_scale: float = Field(1.0, gt=0, description="Fraction of the RTO a sandbox drill may take.")
    restores: list[Literal["postgres", "storage", "bigquery", "bigtable"]] = Field(
        default_factory=list,
        description="Stores whose data must be exactly as before the break once the playbook ran.",
    )


class Playbook(Strict):
    """One procedure: a disaster level or a maintenance task."""

    id: str = Field(pattern=PLAYBOOK_ID)
    title: str
    tier: Tier
    level: int | None = Field(None, ge=1, le=3)
    rto: Duration | None = None
    rpo: Duration | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    scenario: Scenario | None = None
    not_drillable: str | None = Field(None, description="Why this playbook cannot be drilled.")
    drill_every: Duration | None = Field(None, description="How often it must be drilled.")

    _v_rto = field_validator("rto", "rpo", "drill_every")(_duration)

    @property
    def rto_seconds(self) -> float | None:
        return parse_duration(self.rto) if self.rto is not None else None

    @property
    def rpo_seconds(self) -> float | None:
        return parse_duration(self.rpo) if self.rpo is not None else None

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the playbook format (by alias, as written in YAML)."""
    schema = Playbook.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://runbook.dev/schema/playbook.json"
    schema["title"] = "runbook playbook"
    return schema
