"""``notify.slack``: a playbook posts its own Slack message (e.g. to the security channel).

The message goes through the notification outbox the engine's process hands in
(``ctx.services.messages``): it is journaled (``notification_queued``) and queued for the
background sender, so the step never waits for Slack, and a Slack outage never fails it. The
output ``notification_id`` names the message in the journal and the export.
"""

from __future__ import annotations

from pydantic import Field

from runbook.actions.spec import ActionOutputs, ActionParams, StepContext, action
from runbook.core.effect import Effect
from runbook.core.errors import ActionError


class SlackNotifyParams(ActionParams):
    text: str = Field(min_length=1)
    """The message (plain text; long text is split to fit Slack)."""
    channel: str | None = None
    """Channel (#name or id); default the incident channel."""
    security: bool = False
    """Post to the configured security_channel."""
    thread: bool = True
    """In the incident channel, reply in the incident's thread."""


class SlackNotifyOutputs(ActionOutputs):
    notification_id: str
    """The notification's id in the journal."""
    channel: str
    """Where it is posted."""
    status: str
    """The outbox state when it was queued (e.g. 'all sent', '3 waiting')."""


def _target(params: SlackNotifyParams) -> str:
    if params.channel:
        return params.channel
    return "the security channel" if params.security else "the incident channel"


def _describe(params: SlackNotifyParams) -> str:
    preview = " ".join(params.text.split())
    if len(preview) > 80:
        preview = preview[:77] + "..."
    return f"slack message to {_target(params)}: {preview!r}"


@action("notify.slack", Effect.MUTATING, "Post a Slack message (through the outbox; never blocks on Slack).",
        target=_target, describe=_describe)
def slack(ctx: StepContext, params: SlackNotifyParams) -> SlackNotifyOutputs:
    outbox = ctx.services.messages
    if outbox is None:
        raise ActionError(
            f"Slack is not configured for environment {ctx.environment.name!r}: add "
            f"[environments.{ctx.environment.name}.slack] (channel, token_env) or [notify.slack] to runbook.toml."
        )
    channel = params.channel
    if params.security:
        channel = channel or outbox.security_channel
        if not channel:
            raise ActionError(
                "No security_channel is configured for Slack: "
                "add security_channel to the slack settings in runbook.toml."
            )
    # The engine's redactor masks secret params a template may have put into the text.
    text = ctx.redact(params.text)
    nid = outbox.enqueue_message(ctx.incident_id, text, channel=channel, step=ctx.step_id, thread=params.thread)
    dest = channel or outbox.default_channel
    ctx.log(f"queued Slack message {nid} for {dest} ({outbox.status()})")
    return SlackNotifyOutputs(notification_id=nid, channel=dest, status=outbox.status())


SPECS = [slack]
