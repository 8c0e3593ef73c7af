"""The query package: every read of a Store is planned, run and merged here.

Nothing in it imports ``tael.Store``; a Store hands each query a
:class:`~tael._query.context.ReadContext` (the tiers, the blob store, the text
index and the snapshot rule) and delegates. This file imports nothing, so a tier
may import one module of the package (its filters) without a cycle.
"""
