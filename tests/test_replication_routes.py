"""The ``/replication/*`` routes serve a Receiver, not a Store: here a plain object
that records what it is asked, served by uvicorn on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgpack
from starlette.applications import Starlette

import tael
from tael._errors import ReplicationError
from tael._replication.http import Receiver, routes
from tael._replication.protocol import MEDIA_TYPE, PROTOCOL, Conflict

from .test_security import InProcess


class FakeReceiver:
    def __init__(self, tmp: Path) -> None:
        self.path = tmp
        self.settings = tael.Settings()
        self.store_id: bytes | None = b"\x01" * 16
        self.received: list[dict[str, Any]] = []
        self.end = 100
        self.conflict: Conflict | None = None
        self.promoted = False

    def replicating(self) -> bool:
        return True

    def replication_status(self) -> tael.ReplicationStatus:
        role = "leader" if self.promoted else "standby"
        return tael.ReplicationStatus(role=role, epoch=2 if self.promoted else 1, store_id=None, end_lsn=self.end)

    def promote(self) -> None:
        if self.promoted:
            raise ReplicationError("not a standby")
        self.promoted = True

    def receive(self, msg: dict[str, Any]) -> int:
        if self.conflict is not None:
            raise self.conflict
        self.received.append(msg)
        self.end += sum(len(f) for _lsn, f in msg["frames"])
        return self.end


def shipment(**over: Any) -> bytes:
    msg: dict[str, Any] = {"protocol": PROTOCOL, "store_id": None, "epoch": 1, "history": [[1, 0]], "from": 100}
    msg |= {"leader_end": 103, "frames": [[100, b"abc"]], **over}
    packed: bytes = msgpack.packb(msg, use_bin_type=True)
    return packed


def test_the_routes_serve_any_receiver(tmp_path: Path) -> None:
    fake = FakeReceiver(tmp_path)
    receiver: Receiver = fake  # the protocol is all the routes need
    server = InProcess(Starlette(routes=routes(receiver)))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            status = client.get("/replication/status")
            assert status.headers["content-type"] == MEDIA_TYPE
            assert msgpack.unpackb(status.content) == {
                "role": "standby",
                "epoch": 1,
                "end_lsn": 100,
                "store_id": b"\x01" * 16,
            }

            wal = client.post("/replication/wal", content=shipment(), headers={"content-type": MEDIA_TYPE})
            assert wal.status_code == 200 and msgpack.unpackb(wal.content) == {"end_lsn": 103}
            assert [m["frames"] for m in fake.received] == [[[100, b"abc"]]]

            fake.conflict = Conflict("fenced off", end_lsn=103, fatal=True)
            refused = client.post("/replication/wal", content=shipment(), headers={"content-type": MEDIA_TYPE})
            assert refused.status_code == 409
            assert msgpack.unpackb(refused.content) == {"error": "fenced off", "end_lsn": 103, "fatal": True}
            malformed = client.post(
                "/replication/wal", content=shipment(epoch="one"), headers={"content-type": MEDIA_TYPE}
            )
            assert malformed.status_code == 400 and "field 'epoch' must be int" in malformed.json()["error"]

            assert client.post("/replication/promote").json() == {"role": "leader", "epoch": 2, "end_lsn": 103}
            assert client.post("/replication/promote").status_code == 409
            assert len(fake.received) == 1
    finally:
        server.close()
