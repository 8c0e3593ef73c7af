"""WAL shipping: a leader streams its framed WAL records to standbys over HTTP.

A standby's WAL is a byte copy of its leader's (the same frames at the same
LSNs), so a standby's position is one number, the end of its durable WAL, and
catching up is reading the leader's retained WAL from there. The leader ships
after its own fsync and, under synchronous settings, acknowledges an insert only
once enough standbys answered that the record is durable in their WAL. Each
standby applies what it receives through the same commit pipeline as a leader,
so its WAL, hot tier, index and cold tier stand on their own. The protocol, its
fencing (epochs) and the failures it covers are in docs/scaling.md.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from . import _limits
from ._auth import Guard, data_roots, host_check, read_token_file, server_tokens, tls_options
from ._errors import ConfigurationError, ReplicationError, TaelError
from ._models import ReplicaStatus
from ._wal import read_frames

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ._settings import Settings
    from ._store import Store

log = logging.getLogger(__name__)

PROTOCOL = 1
_IDLE_S = 1.0  # a leader with nothing to ship sends an empty shipment this often (liveness, lag)
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.05, 2.0

LEADER, STANDBY = "leader", "standby"


# ---------------------------------------------------------------- identity


@dataclass(slots=True)
class Identity:
    """What a data directory knows about its place in a replicated set (kept in the
    hot tier's meta table): a store id shared by a leader and its standbys, the
    role, the epoch and the epoch history [(epoch, first LSN of that epoch)]."""

    store_id: bytes | None
    role: str
    epoch: int
    history: list[tuple[int, int]]
    leader_url: str | None = None

    def pack(self) -> bytes:
        packed: bytes = msgpack.packb(
            [self.store_id, self.role, self.epoch, [list(h) for h in self.history], self.leader_url], use_bin_type=True
        )
        return packed

    @classmethod
    def unpack(cls, raw: bytes) -> Identity:
        store_id, role, epoch, history, leader_url = msgpack.unpackb(raw, raw=False)
        return cls(store_id, role, epoch, [(int(e), int(s)) for e, s in history], leader_url)

    @classmethod
    def new_leader(cls) -> Identity:
        return cls(uuid.uuid4().bytes, LEADER, 1, [(1, 0)])

    @classmethod
    def new_standby(cls) -> Identity:
        return cls(None, STANDBY, 0, [])

    def epoch_end(self, epoch: int) -> int | None:
        """The LSN where ``epoch`` ended in this history (None: it did not end)."""
        for e, start in self.history:
            if e > epoch:
                return start
        return None


# ---------------------------------------------------------------- leader


class _Replica:
    def __init__(self, url: str, saved: int | None) -> None:
        self.url = url.rstrip("/")
        self.acked: int | None = None
        self.position = saved  # last known acked position (persisted at checkpoints): retain from here
        self.state = "connecting"
        self.error: str | None = None


class Leader:
    """Ships the WAL to every standby in ``Settings.replicas``, one thread each, and
    lets commits wait for their acknowledgements."""

    def __init__(
        self,
        *,
        identity: Identity,
        wal_dir: Path,
        replicas: Sequence[str],
        required_acks: int | None,
        timeout_s: float,
        batch_bytes: int,
        max_retained_bytes: int,
        durable_lsn: int,
        saved_positions: dict[str, int],
        save_positions: Callable[[dict[str, int]], None],
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.identity = identity
        self._client_options = client_options or {}
        self.wal_dir = wal_dir
        self.replicas = [_Replica(u, saved_positions.get(u.rstrip("/"))) for u in replicas]
        self.required = len(self.replicas) if required_acks is None else required_acks
        self.timeout_s = timeout_s
        self.batch_bytes = batch_bytes
        self.max_retained = max_retained_bytes
        self._save = save_positions
        self._cv = threading.Condition()  # replica states and acks: commits wait on it
        self._data = threading.Condition()  # the durable end: idle shippers wait on it
        self.durable = durable_lsn
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ship_loop, args=(r,), name=f"tael-ship:{r.url}", daemon=True)
            for r in self.replicas
        ]

    def start(self) -> Leader:
        for t in self._threads:
            t.start()
        return self

    # ------------------------------------------------------------ commit side

    def notify(self, durable_lsn: int) -> None:
        with self._data:
            self.durable = max(self.durable, durable_lsn)
            self._data.notify_all()

    def wait_acked(self, end: int) -> None:
        """Return once ``required_acks`` standbys hold the WAL up to ``end`` durably."""
        if self.required == 0:
            return
        deadline = time.monotonic() + self.timeout_s
        with self._cv:
            while sum(1 for r in self.replicas if r.acked is not None and r.acked >= end) < self.required:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    states = ", ".join(
                        f"{r.url}: {r.state}" + (f" ({r.error})" if r.error else "") for r in self.replicas
                    )
                    raise ReplicationError(
                        f"{self.required} standby acknowledgement(s) did not arrive within "
                        f"{self.timeout_s:g} s (Settings.replication_timeout_s); the write is durable on this "
                        f"leader but was not acknowledged. Standbys: {states}"
                    )
                self._cv.wait(left)

    def retain_from(self, durable_lsn: int) -> int:
        """The oldest WAL position some standby still needs, ignoring standbys further
        behind than ``Settings.replication_max_retained_bytes``."""
        lsn = durable_lsn
        with self._cv:
            for r in self.replicas:
                pos = r.acked if r.acked is not None else (r.position if r.position is not None else 0)
                if durable_lsn - pos <= self.max_retained:
                    lsn = min(lsn, pos)
        return lsn

    def save_positions(self) -> None:
        with self._cv:
            known = {r.url: r.position for r in self.replicas if r.position is not None}
        if known:
            self._save({u: p for u, p in known.items() if p is not None})

    def status(self) -> tuple[ReplicaStatus, ...]:
        with self._cv:
            return tuple(
                ReplicaStatus(
                    url=r.url,
                    state=r.state,
                    acked_lsn=r.acked,
                    lag_bytes=None if r.acked is None else max(self.durable - r.acked, 0),
                    last_error=r.error,
                )
                for r in self.replicas
            )

    def close(self) -> None:
        self._stop.set()
        for cv in (self._cv, self._data):
            with cv:
                cv.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join()

    # ------------------------------------------------------------ shipping

    def _set(self, r: _Replica, state: str, error: str | None, acked: int | None = None, known: bool = False) -> None:
        with self._cv:
            if state != r.state or error != r.error:
                if error:
                    log.warning("standby %s: %s (%s)", r.url, state, error)
                else:
                    log.info("standby %s: %s", r.url, state)
            r.state, r.error = state, error
            if known:
                r.acked = acked
                if acked is not None:
                    r.position = acked
            self._cv.notify_all()

    def _ship_loop(self, r: _Replica) -> None:
        import httpx

        backoff = _BACKOFF_MIN_S
        with httpx.Client(timeout=self.timeout_s, **self._client_options) as client:
            while not self._stop.is_set():
                try:
                    if r.acked is None:
                        self._handshake(client, r)
                    if self._ship_once(client, r):
                        backoff = _BACKOFF_MIN_S
                        continue
                except httpx.HTTPError as exc:
                    self._set(r, "down", f"{type(exc).__name__}: {exc}", None, known=True)
                except _Unavailable as exc:
                    self._set(r, "down", str(exc), None, known=True)
                except _Refused as exc:
                    self._set(r, "refused", str(exc), None, known=True)
                    backoff = _BACKOFF_MAX_S
                except ReplicationError as exc:
                    self._set(r, "needs_seed", str(exc), None, known=True)
                    backoff = _BACKOFF_MAX_S
                except Exception as exc:  # keep shipping: a bug here must not stop replication silently
                    log.exception("standby %s: shipping failed", r.url)
                    self._set(r, "down", f"{type(exc).__name__}: {exc}", None, known=True)
                self._stop.wait(backoff)  # new writes do not cut a backoff short
                backoff = min(backoff * 2, _BACKOFF_MAX_S)

    def _handshake(self, client: Any, r: _Replica) -> None:
        resp = client.get(f"{r.url}/replication/status")
        _check_access(resp)
        if resp.status_code != 200:
            raise _Refused(f"status answered HTTP {resp.status_code}: {resp.text[:200]}")
        st = msgpack.unpackb(resp.content, raw=False)
        if st.get("role") != STANDBY:
            raise _Refused(f"it is a {st.get('role')} (promoted?), not a standby")
        if st.get("store_id") not in (None, self.identity.store_id):
            raise _Refused("it holds another store (its store id differs from this leader's)")
        epoch, end = int(st["epoch"]), int(st["end_lsn"])
        self._check_not_ahead(end)
        if epoch > self.identity.epoch:
            raise _Refused(f"it follows epoch {epoch}, newer than this leader's {self.identity.epoch}: fenced off")
        ended = self.identity.epoch_end(epoch) if epoch else None
        if ended is not None and end > ended:
            raise _Refused(
                f"its WAL (to LSN {end}) runs past where its epoch {epoch} ended in this leader's history "
                f"(LSN {ended}): the histories diverged; seed it again"
            )
        with self._cv:
            r.acked = r.position = end
            self._cv.notify_all()

    def _check_not_ahead(self, end: int) -> None:
        """A standby's WAL never legitimately runs past its leader's: if it does, this
        leader lost WAL it had shipped (a restore, a repair), and acks from it would be false."""
        with self._data:
            durable = self.durable
        if end > durable:
            raise _Refused(
                f"its WAL (to LSN {end}) runs past this leader's durable end (LSN {durable}): it holds records "
                "this leader does not; seed it again"
            )

    def _ship_once(self, client: Any, r: _Replica) -> bool:
        """Send one shipment (or an empty one after an idle second); whether the
        standby's position moved or it took the shipment."""
        with self._cv:
            acked = r.acked
        assert acked is not None
        with self._data:
            if self.durable <= acked and not self._stop.is_set():
                self._data.wait(_IDLE_S)  # woken by new durable WAL only, not by other standbys' acks
            durable = self.durable
        frames = read_frames(self.wal_dir, acked, durable, self.batch_bytes) if durable > acked else []
        ident = self.identity
        body = msgpack.packb(
            {
                "protocol": PROTOCOL,
                "store_id": ident.store_id,
                "epoch": ident.epoch,
                "history": [list(h) for h in ident.history],
                "from": acked,
                "leader_end": durable,
                "frames": [[lsn, f] for lsn, f in frames],
            },
            use_bin_type=True,
        )
        resp = client.post(f"{r.url}/replication/wal", content=body, headers={"content-type": "application/x-tael-wal"})
        _check_access(resp)
        if resp.status_code == 503:
            raise _Unavailable(f"the standby cannot take WAL now: {resp.text[:200]}")
        if resp.status_code not in (200, 409):
            raise _Refused(f"HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            answer = msgpack.unpackb(resp.content, raw=False)
            end = int(answer["end_lsn"])
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise _Refused(
                f"HTTP {resp.status_code} with an answer that does not read: {resp.content[:200]!r}"
            ) from exc
        if resp.status_code == 409 and answer.get("fatal"):
            raise _Refused(str(answer.get("error", "refused")))
        self._check_not_ahead(end)
        if resp.status_code == 409:
            self._set(r, "streaming", str(answer.get("error")), end, known=True)  # resume from where it is
            return end != acked  # no move: back off rather than send the same again at once
        self._set(r, "streaming", None, end, known=True)
        return True


def client_options(settings: Settings) -> dict[str, Any]:
    """``httpx.Client`` arguments for shipping to ``Settings.replicas``: the bearer
    token of ``Settings.replication_token_file`` and the CAs of
    ``Settings.replication_ca_file``. Read once (at open): changing them takes a restart."""
    opts: dict[str, Any] = {}
    if settings.replication_token_file is not None:
        token = read_token_file(settings.replication_token_file, "Settings.replication_token_file")
        opts["headers"] = {"authorization": f"Bearer {token}"}
    if settings.replication_ca_file is not None:
        ca = settings.replication_ca_file
        try:
            opts["verify"] = ssl.create_default_context(cafile=ca)
        except OSError as exc:
            raise ConfigurationError(f"cannot read Settings.replication_ca_file {ca}: {exc.strerror or exc}") from None
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"Settings.replication_ca_file {ca} holds no usable PEM CA certificate: {exc.reason or exc}"
            ) from None
    return opts


def _check_access(resp: Any) -> None:
    """Refusals of the standby's guard (tael._auth), with what to fix on this leader."""
    code = resp.status_code
    if code == 401:
        raise _Refused(
            "the standby wants a bearer token this leader does not present or it does not know (HTTP 401): set "
            "Settings.replication_token_file to a file holding a token of the standby's auth file"
        )
    if code == 403:
        raise _Refused("the standby's auth file does not give this leader's token the 'replication' scope (HTTP 403)")
    if code == 404 and b"replication is off" in resp.content:
        raise _Refused("it is not a standby: its replication endpoint is off (HTTP 404)")


class _Refused(TaelError):
    """The standby will not take this leader's WAL: retried only slowly."""


class _Unavailable(TaelError):
    """The standby answered but cannot take WAL now (closing, hot tier refusing writes)."""


# ---------------------------------------------------------------- standby


class Conflict(TaelError):
    """A shipment a standby will not take; ``fatal`` when retrying cannot help."""

    def __init__(self, message: str, *, end_lsn: int, fatal: bool) -> None:
        super().__init__(message)
        self.end_lsn = end_lsn
        self.fatal = fatal


def check_shipment(ident: Identity, end_lsn: int, msg: dict[str, Any]) -> Identity | None:
    """Whether a standby with ``ident`` whose WAL ends at ``end_lsn`` may take this
    shipment; returns the identity to adopt (None: unchanged). Raises Conflict."""
    if msg.get("protocol") != PROTOCOL:
        raise Conflict(f"replication protocol {msg.get('protocol')!r} is not {PROTOCOL}", end_lsn=end_lsn, fatal=True)
    if ident.role != STANDBY:
        raise Conflict("this store is a leader (promoted); it no longer takes shipped WAL", end_lsn=end_lsn, fatal=True)
    store_id, epoch = msg["store_id"], int(msg["epoch"])
    history = [(int(e), int(s)) for e, s in msg["history"]]
    if ident.store_id is not None and store_id != ident.store_id:
        raise Conflict("the leader holds another store (store ids differ)", end_lsn=end_lsn, fatal=True)
    if epoch < ident.epoch:
        raise Conflict(
            f"this standby follows epoch {ident.epoch}; a leader of the older epoch {epoch} is fenced off",
            end_lsn=end_lsn,
            fatal=True,
        )
    if epoch > ident.epoch and ident.epoch:
        leader = Identity(store_id, LEADER, epoch, history)
        ended = leader.epoch_end(ident.epoch)
        if ended is not None and end_lsn > ended:
            raise Conflict(
                f"this standby's WAL (to LSN {end_lsn}) runs past where epoch {ident.epoch} ended in the "
                f"leader's history (LSN {ended}): the histories diverged; seed this standby again",
                end_lsn=end_lsn,
                fatal=True,
            )
    if store_id != ident.store_id or epoch != ident.epoch or history != ident.history:
        return Identity(store_id, STANDBY, epoch, history, ident.leader_url)
    return None


_SHIPMENT_FIELDS = {"protocol": int, "epoch": int, "history": list, "from": int, "leader_end": int, "frames": list}


def parse_shipment(raw: bytes) -> dict[str, Any]:
    """A shipment's msgpack body, its shape checked; ValueError names what is wrong."""
    try:
        msg = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"not msgpack: {exc}") from exc
    if not isinstance(msg, dict):
        raise ValueError("not a map")
    for name, kind in _SHIPMENT_FIELDS.items():
        if not isinstance(msg.get(name), kind) or isinstance(msg.get(name), bool):
            raise ValueError(f"field {name!r} must be {kind.__name__}, got {type(msg.get(name)).__name__}")
    if not (msg.get("store_id") is None or isinstance(msg["store_id"], bytes)):
        raise ValueError("field 'store_id' must be bytes or nil")
    if not all(isinstance(h, list) and len(h) == 2 and all(type(v) is int for v in h) for h in msg["history"]):
        raise ValueError("field 'history' must be [[epoch, lsn], ...]")
    for f in msg["frames"]:
        if not (isinstance(f, list) and len(f) == 2 and type(f[0]) is int and isinstance(f[1], bytes)):
            raise ValueError("field 'frames' must be [[lsn, frame bytes], ...]")
    return msg


def replicating(store: Store) -> bool:
    """Whether ``/replication/*`` exists on this store: a standby, a leader with
    replicas, or a store that was promoted (epoch 2 or more: its old leader must hear
    that it is fenced off, and a second promotion that it is no standby)."""
    return store.standby or bool(store.settings.replicas) or store._identity.epoch > 1


def routes(store: Store) -> list[Any]:
    """The replication endpoints a standby serves (and every ``tael serve`` answers)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    media = "application/x-tael-wal"

    async def status(_r: Request) -> Response:
        try:
            st = store.replication_status()
        except TaelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        body = {"role": st.role, "epoch": st.epoch, "end_lsn": st.end_lsn, "store_id": store._identity_store_id()}
        return Response(msgpack.packb(body, use_bin_type=True), media_type=media)

    async def wal(request: Request) -> Response:
        raw = await _limits.read_shipment(request, store.settings)  # bounded: size, time, memory
        try:
            msg = parse_shipment(raw)
        except ValueError as exc:
            return JSONResponse({"error": f"malformed shipment: {exc}"}, status_code=400)
        try:
            end = await run_in_threadpool(store._receive_shipment, msg)
        except Conflict as exc:
            body = {"error": str(exc), "end_lsn": exc.end_lsn, "fatal": exc.fatal}
            return Response(msgpack.packb(body, use_bin_type=True), status_code=409, media_type=media)
        except TaelError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        return Response(msgpack.packb({"end_lsn": end}, use_bin_type=True), media_type=media)

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

    def __init__(self, store: Store, listen: str) -> None:
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
            replicating=lambda: replicating(store),
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
