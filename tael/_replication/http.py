"""The ``/replication/*`` HTTP routes and a standby's embedded endpoint.

They serve a :class:`Receiver`, not a store: ``Node`` (tael/_replication/node.py)
implements it, and ``tael serve`` mounts the same routes over its store's node.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from .. import _limits
from .._auth import Guard, data_roots, host_check, server_tokens, tls_options
from .._errors import ReplicationError, TaelError
from .._models import ReplicationStatus
from .._settings import Settings
from .protocol import MEDIA_TYPE, Conflict, parse_shipment

if TYPE_CHECKING:
    from starlette.applications import Starlette


class Receiver(Protocol):
    """What the replication routes need of a store: its replication status, the
    promotion of a standby, the receipt of one parsed shipment (``receive`` returns
    the end of the durable WAL and raises Conflict for a shipment it will not take),
    and whether the routes exist at all (``replicating``)."""

    @property
    def path(self) -> Path: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def store_id(self) -> bytes | None: ...

    def replicating(self) -> bool: ...

    def replication_status(self) -> ReplicationStatus: ...

    def promote(self) -> None: ...

    def receive(self, msg: dict[str, Any]) -> int: ...


def routes(store: Receiver) -> list[Any]:
    """The replication endpoints a standby serves (and every ``tael serve`` answers)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def status(_r: Request) -> Response:
        try:
            st = store.replication_status()
        except TaelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        body = {"role": st.role, "epoch": st.epoch, "end_lsn": st.end_lsn, "store_id": store.store_id}
        return Response(msgpack.packb(body, use_bin_type=True), media_type=MEDIA_TYPE)

    async def wal(request: Request) -> Response:
        raw = await _limits.read_shipment(request, store.settings)  # bounded: size, time, memory
        try:
            msg = parse_shipment(raw)
        except ValueError as exc:
            return JSONResponse({"error": f"malformed shipment: {exc}"}, status_code=400)
        try:
            end = await run_in_threadpool(store.receive, msg)
        except Conflict as exc:
            body = {"error": str(exc), "end_lsn": exc.end_lsn, "fatal": exc.fatal}
            return Response(msgpack.packb(body, use_bin_type=True), status_code=409, media_type=MEDIA_TYPE)
        except TaelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        return Response(msgpack.packb({"end_lsn": end}, use_bin_type=True), media_type=MEDIA_TYPE)

    async def promote(_r: Request) -> Response:
        try:
            await run_in_threadpool(store.promote)
        except TaelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        st = store.replication_status()
        return JSONResponse({"role": st.role, "epoch": st.epoch, "end_lsn": st.end_lsn})

    return [
        Route("/replication/status", status),
        Route("/replication/wal", wal, methods=["POST"]),
        Route("/replication/promote", promote, methods=["POST"]),
    ]


class Endpoint:
    """The replication endpoint of an embedded standby (``Settings.standby_listen``):
    uvicorn in a background thread serving :func:`routes`, behind the same guard as
    ``tael serve`` (``Settings.auth_file``, the Host check, ``Settings.tls_cert_file``;
    a non-loopback address needs an auth file or ``allow_unauthenticated``)."""

    def __init__(self, store: Receiver, listen: str) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.middleware import Middleware

        host, _, port = listen.rpartition(":")
        s = store.settings
        served = routes(store)
        guard = Middleware(
            Guard,
            tokens=server_tokens(s, host),
            allowed_hosts=host_check(s, host),
            replicating=store.replicating,
            roots=data_roots(store.path),
        )
        # the limits guard first (outermost): it counts and bounds what the auth guard refuses too
        app: Starlette = Starlette(routes=served, middleware=[_limits.guard(s, served), guard])
        config = uvicorn.Config(
            app, host=host, port=int(port), log_level="warning", access_log=False, lifespan="off", **tls_options(s)
        )
        _limits.configure_uvicorn(config, s)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"tael-standby:{listen}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ReplicationError(f"could not serve the standby endpoint on {listen}")
            time.sleep(0.01)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join()
