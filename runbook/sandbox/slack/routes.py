"""The Slack stand-in's HTTP surface on Starlette.

* ``/api/METHOD`` (GET or POST): the Web API, JSON or form bodies (and query strings).
* ``/services/T.../B.../X...`` (POST): incoming webhooks; any other method is ``invalid_payload``.
* ``GET /_messages``, ``GET /_stats``, ``GET|POST /_control``: inspection and faults.
* anything else: ``404 not found`` as text.

A webhook path is a credential and a query string may carry a token: the debug log names only
the API path, or "webhook".
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from runbook.sandbox.slack.api import Reply, SlackApi
from runbook.sandbox.slack.limits import parse_api_params
from runbook.sandbox.webserver import Connections, DropConnection, exact_response

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from runbook.sandbox.slack.server import SlackServer

log = logging.getLogger(__name__)

SERVER_NAME = "runbook-slack-standin"


async def serve_api(api: SlackApi, request: Request, path: str, body: bytes) -> Reply:
    method = path[len("/api/") :]
    content_type = request.headers.get("Content-Type", "")
    params = parse_api_params(request.scope.get("query_string", b"").decode("latin-1"), body, content_type)
    entry, fault = api.faults.begin(method)
    reply = api.fault_reply(entry, fault, webhook=False)
    if reply is not None:
        return reply
    if fault is not None:  # slow: answer normally, later
        await asyncio.sleep(fault["delay"])
    return api.call(entry, method, params, request.headers.get("Authorization"))


async def serve_webhook(api: SlackApi, request: Request, path: str, body: bytes) -> Reply:
    if request.method != "POST":
        return Reply.text("invalid_payload", 400)
    known = path in api.workspace.webhooks
    entry, fault = api.faults.begin("webhook", take_fault=known)
    if not known:
        return api.finish(entry, Reply.text("no_service", 404), "no_service")
    reply = api.fault_reply(entry, fault, webhook=True)
    if reply is not None:
        return reply
    if fault is not None:  # slow
        await asyncio.sleep(fault["delay"])
    return api.webhook(entry, path, body, request.headers.get("Content-Type", ""))


def serve_control(slack: SlackServer, method: str, path: str, query: str, body: bytes) -> Reply:
    """``/_messages``, ``/_stats`` and ``/_control``."""
    if path == "/_messages" and method == "GET":
        channel = dict(parse_qsl(query)).get("channel")
        return Reply.json({"ok": True, "messages": slack.messages(channel), "stats": slack.stats()})
    if path == "/_stats" and method == "GET":
        return Reply.json({"ok": True, **slack.stats()})
    if path == "/_control" and method == "GET":
        return Reply.json({"ok": True, "fault": slack.fault()})
    if path == "/_control" and method == "POST":
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("the control payload must be a JSON object")
            return Reply.json(slack.control(payload))
        except (ValueError, TypeError) as err:
            return Reply.json({"ok": False, "error": str(err)}, 400)
    return Reply.json({"ok": False, "error": "not_found"}, 404)


def build_app(slack: SlackServer, api: SlackApi, connections: Connections) -> Starlette:
    """The Starlette application; ``connections`` lets a ``down`` fault drop a connection."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def dispatch(request: Request) -> Response | DropConnection:
        body = await request.body()  # read it all, even to drop it
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        if path.startswith("/api/"):
            reply = await serve_api(api, request, path, body)
        elif path.startswith("/services/"):
            reply = await serve_webhook(api, request, path, body)
        elif path.startswith("/_"):
            query = request.scope.get("query_string", b"").decode("latin-1")
            reply = serve_control(slack, request.method, path, query, body)
        else:
            reply = Reply.text("not found", 404)
        shown = "webhook" if path.startswith("/services/") else path
        log.debug("slack stand-in %s %s -> %s", request.method, shown, reply.status)
        if reply.drop:
            return DropConnection(connections)  # nothing written: the client sees the peer hang up
        headers = list(reply.headers.items())
        return exact_response(
            reply.status, reply.body, reply.content_type, server=SERVER_NAME, headers=headers
        )

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=["GET", "POST"])])
