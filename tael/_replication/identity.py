"""A data directory's place in a replicated set: its identity, kept in the hot tier's meta table."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgpack

from .._cold import ColdTier
from .._coldfs import LOCATION_FILE
from .._errors import StandbyError
from .._hot import HotTier
from .._settings import Settings

log = logging.getLogger(__name__)

LEADER, STANDBY = "leader", "standby"
IDENTITY_KEY = b"replication_identity"
"""The hot tier's ``meta`` key holding the packed :class:`Identity`."""


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

    def promoted(self, end_lsn: int) -> Identity:
        """This standby's identity as a leader from WAL position ``end_lsn``: a new epoch,
        above every epoch in its history, so its old leader is fenced off."""
        epoch = max([self.epoch, *(e for e, _ in self.history)]) + 1
        return Identity(
            self.store_id if self.store_id is not None else Identity.new_leader().store_id,
            LEADER,
            epoch,
            [*self.history, (epoch, end_lsn)],
            None,
        )

    def epoch_end(self, epoch: int) -> int | None:
        """The LSN where ``epoch`` ended in this history (None: it did not end)."""
        for e, start in self.history:
            if e > epoch:
                return start
        return None


def read_identity(hot: HotTier) -> Identity:
    """The identity a read-only open sees (a directory never opened for writing is a leader)."""
    raw = hot.get_meta(IDENTITY_KEY)
    return Identity.unpack(raw) if raw is not None else Identity.new_leader()


def save_identity(hot: HotTier, identity: Identity) -> None:
    hot.put_meta({IDENTITY_KEY: identity.pack()})


def open_identity(hot: HotTier, cold: ColdTier, path: Path, settings: Settings, standby: bool) -> Identity:
    """The directory's replication identity, created on first open; a standby
    directory refuses a leader's open and a leader's directory becomes a standby
    when opened with ``standby=True`` (seeding a standby from a copy)."""
    raw = hot.get_meta(IDENTITY_KEY)
    expected = settings.standby_leader_store_id
    if raw is None:
        ident = Identity.new_standby() if standby else Identity.new_leader()
        if standby and expected is not None:
            ident.store_id = bytes.fromhex(expected)  # shipments of any other store are refused
        save_identity(hot, ident)
        return ident
    ident = Identity.unpack(raw)
    if standby and expected is not None and ident.store_id != bytes.fromhex(expected):
        if ident.store_id is not None:
            raise StandbyError(
                f"{path} holds store {ident.store_id.hex()}, not Settings.standby_leader_store_id "
                f"{expected.lower()}: seed this standby again for that leader"
            )
        ident.store_id = bytes.fromhex(expected)
        save_identity(hot, ident)
    if ident.role == STANDBY and not standby:
        raise StandbyError(
            f"{path} is a standby: open it with standby=True, or make it a leader with "
            f"Store.promote() or `tael promote {path}`"
        )
    if ident.role == LEADER and standby:
        if cold.remote and (path / LOCATION_FILE).exists():
            raise StandbyError(
                f"{path} was a leader whose cold files are at {cold.location}: as a standby it "
                "would share them with its leader, and each store deletes what its own manifest does not "
                "name. Set up the standby empty, with its own Settings.cold_uri (docs/scaling.md)"
            )
        log.warning("%s was a leader (epoch %d) and is opened as a standby", path, ident.epoch)
        ident.role = STANDBY
        save_identity(hot, ident)
    return ident
