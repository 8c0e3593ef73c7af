"""The leader side: shipping the WAL to standbys, one thread each, and ``Shippers``,
the commit pipeline's follower that holds the shipping (see tael/_commit.py).

A leader ships after its own fsync; under synchronous settings
(``Settings.required_acks``) an insert returns only once enough standbys hold it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack

from .._auth import read_token_file
from .._commit import Follower
from .._errors import ConfigurationError, ReplicationError, TaelError
from .._hot import HotTier
from .._keys import REPLICA_POSITION_PREFIX
from .._models import ReplicaStatus
from .._settings import Settings
from .._wal import read_frames
from .identity import LEADER, STANDBY, Identity
from .protocol import MEDIA_TYPE, PROTOCOL

log = logging.getLogger(__name__)

_IDLE_S = 1.0  # a leader with nothing to ship sends an empty shipment this often (liveness, lag)
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.05, 2.0


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
        resp = client.post(f"{r.url}/replication/wal", content=body, headers={"content-type": MEDIA_TYPE})
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


# ---------------------------------------------------------------- the pipeline's follower


class Shippers(Follower):
    """The standbys this store ships its WAL to, as one follower of the commit
    pipeline, present from the open whatever the role: a leader with
    ``Settings.replicas`` ships from the start; a standby with replicas of its own
    keeps ``Settings.replication_max_retained_bytes`` of WAL behind its end for them
    (their positions are unknown until it leads) and starts shipping when promoted;
    without replicas it holds nothing and needs no WAL."""

    def __init__(
        self,
        settings: Settings,
        client_options: dict[str, Any],
        *,
        wal_dir: Path,
        hot: HotTier,
        identity: Identity,
        durable_lsn: int,
    ) -> None:
        self.settings = settings
        self.client_options = client_options
        self.wal_dir = wal_dir
        self.hot = hot
        self.leader: Leader | None = None
        """Set once shipping starts; read without a lock by commits (set before they are let in)."""
        self.retain_bytes = 0
        if settings.replicas:
            if identity.role == LEADER:
                self.start(identity, durable_lsn)
            else:  # a standby keeps WAL for its own standbys-to-be (see Node.promote)
                self.retain_bytes = settings.replication_max_retained_bytes

    def start(self, identity: Identity, durable_lsn: int) -> None:
        """Start shipping to ``Settings.replicas`` (if any) as the leader ``identity``,
        from the positions the standbys had acknowledged when this leader last
        saved them; from now on their positions hold the WAL, not ``retain_bytes``."""
        s = self.settings
        if s.replicas:
            saved = {}
            for url in s.replicas:
                raw = self.hot.get_meta(REPLICA_POSITION_PREFIX + url.rstrip("/").encode())
                if raw is not None:
                    saved[url.rstrip("/")] = int.from_bytes(raw, "big")
            hot = self.hot

            def save(positions: dict[str, int]) -> None:
                hot.put_meta({REPLICA_POSITION_PREFIX + u.encode(): p.to_bytes(8, "big") for u, p in positions.items()})

            self.leader = Leader(
                identity=identity,
                wal_dir=self.wal_dir,
                replicas=s.replicas,
                required_acks=s.required_acks,
                timeout_s=s.replication_timeout_s,
                batch_bytes=s.replication_batch_bytes,
                max_retained_bytes=s.replication_max_retained_bytes,
                durable_lsn=durable_lsn,
                saved_positions=saved,
                save_positions=save,
                client_options=self.client_options,
            ).start()
        self.retain_bytes = 0

    def status(self) -> tuple[ReplicaStatus, ...]:
        return self.leader.status() if self.leader is not None else ()

    # ------------------------------------------------------------ Follower

    def durable(self, end_lsn: int) -> None:
        if self.leader is not None:
            self.leader.notify(end_lsn)

    def wait(self, end_lsn: int) -> None:
        if self.leader is not None:
            self.leader.wait_acked(end_lsn)

    def retain_from(self, durable_lsn: int) -> int:
        if self.leader is not None:
            return self.leader.retain_from(durable_lsn)
        if self.retain_bytes:
            return max(durable_lsn - self.retain_bytes, 0)
        return durable_lsn

    def checkpoint(self) -> None:
        if self.leader is not None:
            self.leader.save_positions()  # a restarted leader keeps what its standbys need

    def close(self, *, save: bool = True) -> None:
        """Stop shipping (after the pipeline closed), first saving the standbys'
        positions unless ``save`` is False (an open that failed)."""
        if self.leader is not None:
            if save:
                self.leader.save_positions()
            self.leader.close()
