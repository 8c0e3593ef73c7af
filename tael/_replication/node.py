"""One open store as a member of a replicated set: its identity, promotion, status,
and a standby's receipt of its leader's shipments.

``Store`` builds one ``Node`` at open and delegates ``promote``,
``replication_status`` and ``set_leader_url`` to it; the ``/replication/*``
routes (tael/_replication/http.py) serve it through their ``Receiver`` protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._blobs import Payloads
from .._commit import CommitPipeline
from .._errors import CorruptionError, ReadOnlyError, ReplicationError, StandbyError
from .._hot import HotTier
from .._models import ReplicationStatus
from .._record import frame_rows, known_type, rows_problem
from .._settings import Settings
from .._wal import RecordType, verify_frame
from .identity import LEADER, STANDBY, Identity, save_identity
from .leader import Shippers
from .protocol import Conflict, check_shipment

log = logging.getLogger(__name__)


class Node:
    """What replication knows and does for one open store.

    ``pipeline`` and ``shippers`` are None on a read-only store, which reports its
    status but takes no shipment and cannot be promoted. ``check_open`` is the
    store's gate: it raises StoreClosedError once the store is closed."""

    def __init__(
        self,
        path: Path,
        settings: Settings,
        hot: HotTier,
        payloads: Payloads,
        identity: Identity,
        check_open: Callable[[], None],
        *,
        pipeline: CommitPipeline | None = None,
        shippers: Shippers | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self._hot = hot
        self._payloads = payloads
        self._identity = identity
        self._pipeline = pipeline
        self._shippers = shippers
        self._check_open = check_open
        self._lock = threading.Lock()  # one shipment, promotion or leader URL change at a time
        self._leader_end: int | None = None
        self._leader_contact: float | None = None

    # ------------------------------------------------------------ what it is

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def standby(self) -> bool:
        """Whether this store is a standby (takes writes only from its leader)."""
        return self._identity.role == STANDBY

    @property
    def store_id(self) -> bytes | None:
        return self._identity.store_id

    def replicating(self) -> bool:
        """Whether ``/replication/*`` exists on this store: a standby, a leader with
        replicas, or a store that was promoted (epoch 2 or more: its old leader must hear
        that it is fenced off, and a second promotion that it is no standby)."""
        return self.standby or bool(self.settings.replicas) or self._identity.epoch > 1

    def check_writable(self) -> None:
        """Refuse a client write on a standby (StandbyError)."""
        if self._identity.role == STANDBY:
            leader = f" (its leader: {self._identity.leader_url})" if self._identity.leader_url else ""
            raise StandbyError(
                f"the store at {self.path} is a standby{leader}: it takes writes only from its leader until promoted"
            )

    def _local(self) -> CommitPipeline:
        self._check_open()
        if self._pipeline is None:
            raise ReadOnlyError(f"the store at {self.path} was opened read_only=True")
        return self._pipeline

    # ------------------------------------------------------------ Store's replication methods

    def replication_status(self) -> ReplicationStatus:
        """This store's role and epoch; for a leader its standbys' positions and lag,
        for a standby its lag behind the leader (see :class:`ReplicationStatus`)."""
        self._check_open()
        ident = self._identity
        end = self._pipeline.durable_lsn if self._pipeline is not None else self._hot.applied_lsn()
        if ident.role == LEADER:
            return ReplicationStatus(
                role=LEADER,
                epoch=ident.epoch,
                store_id=ident.store_id.hex() if ident.store_id else None,
                end_lsn=end,
                replicas=self._shippers.status() if self._shippers is not None else (),
            )
        contact = self._leader_contact
        return ReplicationStatus(
            role=STANDBY,
            epoch=ident.epoch,
            store_id=ident.store_id.hex() if ident.store_id else None,
            end_lsn=end,
            leader_url=ident.leader_url,
            leader_end_lsn=self._leader_end,
            lag_bytes=None if self._leader_end is None else max(self._leader_end - end, 0),
            last_contact_s=None if contact is None else time.monotonic() - contact,
        )

    def promote(self) -> None:
        """Make this standby a writable leader, durably: it refuses further shipments
        from its old leader (fenced by a new epoch) and starts shipping to its own
        ``Settings.replicas``. Raises ReplicationError if it is not a standby."""
        pipeline = self._local()
        with self._lock:
            ident = self._identity
            if ident.role != STANDBY:
                raise ReplicationError(f"the store at {self.path} is not a standby (it is a {ident.role})")
            pipeline.wait_applied()
            end = pipeline.durable_lsn
            promoted = ident.promoted(end)
            save_identity(self._hot, promoted)
            assert self._shippers is not None
            # before client writes are let in (each waits for its acks); the leader's
            # standby positions hold the WAL from now on
            self._shippers.start(promoted, end)
            self._identity = promoted
            log.warning("%s promoted to leader: epoch %d from LSN %d", self.path, promoted.epoch, end)

    def set_leader_url(self, url: str | None) -> None:
        """Record where this standby's leader is (shown in errors, status and metrics)."""
        if self._identity.role != STANDBY:
            raise ReplicationError(f"the store at {self.path} is not a standby")
        with self._lock:
            self._identity.leader_url = url
            save_identity(self._hot, self._identity)

    # ------------------------------------------------------------ a standby's receipt

    def receive(self, msg: dict[str, Any]) -> int:
        """Standby: take one shipment of WAL frames from the leader (a parsed
        ``/replication/wal`` body); returns the end of this store's durable WAL.
        Raises Conflict for a shipment it will not take."""
        pipeline = self._local()
        with self._lock:
            end = pipeline.durable_lsn
            adopt = check_shipment(self._identity, end, msg)
            items: list[tuple[int, int, Sequence[Any], bytes]] = []
            for lsn, raw in msg["frames"]:
                if lsn < end:
                    continue
                try:
                    frame = verify_frame(raw, lsn, self.settings.wal_max_record_bytes)
                except ReplicationError as exc:  # damaged on the way: the leader sends it again
                    raise Conflict(str(exc), end_lsn=end, fatal=False) from exc
                if frame.rtype == RecordType.PAD:
                    items.append((lsn, frame.rtype, (), raw))
                    continue
                if not known_type(frame.rtype):
                    raise Conflict(
                        f"cannot apply shipped WAL: the record at LSN {lsn} has type {frame.rtype}, unknown to "
                        "this version of tael (is the leader newer?)",
                        end_lsn=end,
                        fatal=True,
                    )
                # Decoded and checked before it is acknowledged: a record the hot tier could
                # never apply (a bug, an older version, a forged shipment) would otherwise
                # stop this standby's applier, and every read, until `tael repair`.
                try:
                    rows = frame_rows(frame, self._payloads)
                except CorruptionError as exc:
                    raise Conflict(
                        f"cannot apply shipped WAL at LSN {lsn}: it does not decode ({exc.__cause__!r})",
                        end_lsn=end,
                        fatal=True,
                    ) from exc
                problem = rows_problem(frame.rtype, rows)
                if problem is not None:
                    raise Conflict(f"cannot apply shipped WAL at LSN {lsn}: {problem}", end_lsn=end, fatal=True)
                items.append((lsn, frame.rtype, rows, raw))
            if adopt is not None:  # only once the shipment proved sound
                save_identity(self._hot, adopt)
                self._identity = adopt
            if items:
                try:
                    end = pipeline.commit_shipped(items)
                except ReplicationError as exc:
                    raise Conflict(str(exc), end_lsn=pipeline.durable_lsn, fatal=False) from exc
            self._leader_end = int(msg["leader_end"])
            self._leader_contact = time.monotonic()
            return end
