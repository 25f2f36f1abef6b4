"""The backup server's object and command line (``python -m runbook.sandbox.bigtable_backup``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.sandbox.bigtable_backup.backups import BackupHandlers
from runbook.sandbox.bigtable_backup.emulator import Emulator
from runbook.sandbox.bigtable_backup.forwarding import make_handler
from runbook.sandbox.bigtable_backup.model import protos
from runbook.sandbox.bigtable_backup.operations import OperationHandlers
from runbook.sandbox.bigtable_backup.state import BackupState

if TYPE_CHECKING:
    import grpc


class BigtableBackupServer:
    """A gRPC server in front of cbtemulator that adds managed backups (see the module docstring).

    Example::

        with BigtableBackupServer(upstream="127.0.0.1:8086", state_dir=tmp) as server:
            os.environ["BIGTABLE_EMULATOR_HOST"] = server.address
            ...

    Args:
        upstream: ``host:port`` of a running cbtemulator.
        port: Port to listen on (0 picks a free one; see :attr:`address`).
        state_dir: Directory for the backup-metadata file; ``None`` keeps metadata in memory only.
        host: Interface to listen on.
        clock: Seconds-since-epoch clock used for backup times and expiry (tests move it forward).
        max_workers: Size of the RPC thread pool (each streaming RPC holds one thread while it runs).
    """

    def __init__(
        self,
        upstream: str,
        port: int = 0,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.time,
        max_workers: int = 32,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._port = port
        self._clock = clock
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` to put in ``BIGTABLE_EMULATOR_HOST`` (after :meth:`start`)."""
        return f"{self.host}:{self.port}"

    def start(self) -> BigtableBackupServer:
        """Bind and start serving; returns self.

        Raises:
            OSError: If the port cannot be bound.
            RuntimeError: If already started.
        """
        if self._server is not None:
            raise RuntimeError("server already started")
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        p = protos()
        self._channel = grpc.insecure_channel(self.upstream, options=unlimited)
        state = BackupState(Emulator(self._channel, p), self.state_dir, self._clock)
        handler = make_handler(BackupHandlers(state, p), OperationHandlers(state, p), self._channel, p)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="bt-backup"),
            handlers=[handler],
            options=[*unlimited, ("grpc.so_reuseport", 0)],  # a taken port is an error, not shared
        )
        try:
            port = server.add_insecure_port(f"{self.host}:{self._port}")  # grpc raises RuntimeError
        except RuntimeError:
            port = 0
        if not port:
            self._channel.close()
            self._channel = None
            raise OSError(f"cannot listen on {self.host}:{self._port}")
        server.start()
        self._port, self._server = port, server
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (in-flight RPCs get ``grace`` seconds) and close the upstream channel."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def wait(self) -> None:
        """Block until the server stops."""
        if self._server is not None:
            self._server.wait_for_termination()

    def __enter__(self) -> BigtableBackupServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: serve until SIGTERM/SIGINT, after printing ``listening HOST:PORT``."""
    parser = argparse.ArgumentParser(
        prog="python -m runbook.sandbox.bigtable_backup",
        description="A gRPC front for Google's Bigtable emulator that implements managed backups.",
    )
    parser.add_argument("--upstream", required=True, help="host:port of the running cbtemulator")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--state-dir", default=None, help="directory for backup metadata (default: memory only)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    server = BigtableBackupServer(args.upstream, args.port, args.state_dir, host=args.host).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"listening {server.address}", flush=True)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
