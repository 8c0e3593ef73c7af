"""WAL shipping: a leader streams its framed WAL records to standbys over HTTP.

A standby's WAL is a byte copy of its leader's (the same frames at the same
LSNs), so a standby's position is one number, the end of its durable WAL, and
catching up is reading the leader's retained WAL from there. The leader ships
after its own fsync and, under synchronous settings, acknowledges an insert only
once enough standbys answered that the record is durable in their WAL. Each
standby applies what it receives through the same commit pipeline as a leader,
so its WAL, hot tier, index and cold tier stand on their own. The protocol, its
fencing (epochs) and the failures it covers are in docs/scaling.md.

- ``identity``: a data directory's place in a replicated set (store id, role, epochs);
- ``protocol``: the shipment format and the fencing rules a standby applies;
- ``leader``: shipping to standbys (``Leader``), and ``Shippers``, the commit
  pipeline's follower that holds it (empty until a standby is promoted);
- ``node``: one open store as a member of the set: promotion, status, and a
  standby's receipt of shipments (``Node``, what Store delegates to);
- ``http``: the ``/replication/*`` routes and a standby's embedded endpoint,
  over the small ``Receiver`` protocol ``Node`` implements.

This package imports nothing of ``tael.Store``; this file imports nothing.
"""
