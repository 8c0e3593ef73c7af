"""The shipment a leader sends a standby, and the rules a standby applies before taking it.

A shipment is one msgpack map (``application/x-tael-wal``): the protocol version,
the leader's store id, epoch and epoch history, the position it ships from, its
durable end, and the frames, each ``[lsn, frame bytes as in the WAL]``. The
standby answers with its durable end. Fencing by epochs is in docs/scaling.md.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .._errors import TaelError
from .identity import LEADER, STANDBY, Identity

PROTOCOL = 1
MEDIA_TYPE = "application/x-tael-wal"


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
