"""The small HTTP base the Dataflow and Slack stand-ins share: a Starlette app served by uvicorn.

Why a background thread on a socket bound here: tests start the servers in-process (``with
SlackServer() as server:``) and need the port at once (port 0 picks one) and a bind error raised
in the caller. The ``python -m`` processes run the same way and keep their main thread for
SIGTERM/SIGINT (uvicorn's own signal capture re-raises the signal after shutting down, so the
process would not exit 0 as the sandbox manager and the tests expect).

What the clients must keep seeing, and how this base keeps it:

* Header names go out exactly as written (``Retry-After``, ``Content-Type``): Starlette lowercases
  them, and ``WebhookClient`` copies a 4xx answer's headers into a plain, case-sensitive dict.
  ``Server`` and ``Date`` come first, as ``http.server`` wrote them.
* A fault may close a connection without a byte of answer (:class:`DropConnection`), which an
  ASGI app cannot otherwise do: uvicorn answers 500 when an app returns without a response. The
  H11 protocol here registers each connection's transport under the client address uvicorn puts
  in the request scope, so the app can close exactly that connection.
* Stopping closes idle keep-alive connections (uvicorn's graceful shutdown), so a client's pooled
  connection cannot keep talking to a stopped server's state.

starlette and uvicorn are imported when a server is built, not with this module.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BackgroundServer", "Connections", "StandIn", "exact_response", "serve_until_signalled"]

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
# In-flight requests get this long when a server stops (a ``slow`` fault may be sleeping).
GRACEFUL_SHUTDOWN_SECONDS = 1


class Connections:
    """The open connections' transports by client address, to close one without answering."""

    def __init__(self) -> None:
        self._by_client: dict[tuple[str, int], asyncio.BaseTransport] = {}

    def add(self, client: tuple[str, int] | None, transport: asyncio.BaseTransport) -> None:
        if client is not None:
            self._by_client[client] = transport

    def discard(self, client: tuple[str, int] | None, transport: asyncio.BaseTransport) -> None:
        if client is not None and self._by_client.get(client) is transport:
            del self._by_client[client]

    async def drop(self, scope: Scope) -> None:
        """Close the request's connection unanswered: the client sees the peer hang up."""
        client = scope.get("client")
        transport = self._by_client.get(tuple(client)) if client else None
        if transport is None:
            return
        transport.close()  # FIN after nothing was written, like http.server's close_connection
        # Let connection_lost run before the app returns, so uvicorn sees a disconnected client
        # instead of an app that forgot to answer (it would log that and try a 500).
        await asyncio.sleep(0)


def exact_response(
    status: int,
    body: bytes,
    content_type: str,
    *,
    server: str,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """A Starlette response whose header names keep their case (see the module docstring)."""
    from starlette.responses import Response

    response = Response(body, status)
    names = [
        ("Server", server),
        ("Date", formatdate(usegmt=True)),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        *headers,
    ]
    response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in names]
    return response


class DropConnection:
    """An ASGI response that answers nothing and closes the connection."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._connections.drop(scope)


def _protocol_class(connections: Connections) -> type[asyncio.Protocol]:
    """uvicorn's H11 protocol, registering each connection's transport in ``connections``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TrackedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            connections.add(self.client, transport)

        def connection_lost(self, exc: Exception | None) -> None:
            connections.discard(self.client, self.transport)
            super().connection_lost(exc)

    return TrackedH11Protocol


class BackgroundServer:
    """Serve an ASGI app with uvicorn on a background thread.

    Args:
        app: The Starlette (ASGI) application.
        host: Interface to bind.
        port: TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        name: The serving thread's name.
        connections: Where connection transports are registered (for :class:`DropConnection`).
        keep_alive: Seconds an idle keep-alive connection stays open.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        name: str,
        connections: Connections | None = None,
        keep_alive: int = 60,
    ) -> None:
        self.host = host
        self.port = port
        self._app = app
        self._name = name
        self._connections = connections or Connections()
        self._keep_alive = keep_alive
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind, serve on a background thread once uvicorn is ready; return the bound port.

        Raises:
            OSError: The port cannot be bound.
            RuntimeError: uvicorn did not start.
        """
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # http.server (which these servers used before) binds with SO_REUSEADDR too.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            http=_protocol_class(self._connections),
            loop="asyncio",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,  # leave the host process's logging alone
            access_log=False,  # request lines may carry a token in a query string
            proxy_headers=False,  # the client address must stay the connection's own
            server_header=False,  # exact_response writes Server and Date itself
            date_header=False,
            timeout_keep_alive=self._keep_alive,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        self._wait(lambda: self._server.started, "did not start")
        return self.port

    def _wait(self, done: Callable[[], bool], failure: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not done():
            if self._thread is None or not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self._name} {failure}")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop accepting, close idle connections, give in-flight requests a moment; idempotent."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=STOP_TIMEOUT_SECONDS + GRACEFUL_SHUTDOWN_SECONDS)


class StandIn:
    """What the Dataflow and Slack server objects share: serving their app on a
    :class:`BackgroundServer`, ``base_url``, an idempotent ``stop()`` and ``with`` blocks.

    A subclass sets ``host`` and ``_http = None`` and, in ``start()``, hands its app to :meth:`_serve`.
    """

    host: str
    _http: BackgroundServer | None

    def start(self) -> Self:
        raise NotImplementedError

    def _serve(self, app: ASGIApp, port: int, *, name: str, connections: Connections | None = None) -> int:
        """Serve ``app`` on ``host:port`` from a background thread; returns the bound port."""
        http = BackgroundServer(app, self.host, port, name=name, connections=connections)
        bound = http.start()
        self._http = http
        return bound

    def _serving(self) -> BackgroundServer:
        if self._http is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._http

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, the root of every route (only after :meth:`start`)."""
        return f"http://{self.host}:{self._serving().port}"

    def stop(self) -> None:
        """Stop serving and release the port (idempotent); later connections are refused."""
        http, self._http = self._http, None
        if http is not None:
            http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_until_signalled(start: Callable[[], str], stop: Callable[[], None]) -> int:
    """Run a stand-in as a process: start it, print ``listening URL``, serve until SIGTERM/SIGINT.

    Args:
        start: Starts the server and returns what the ``listening`` line names.
        stop: Stops it.

    Returns:
        The exit status (0).
    """
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"listening {start()}", flush=True)
    try:
        while not stopping.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
    finally:
        stop()
    return 0
