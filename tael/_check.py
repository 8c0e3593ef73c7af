"""What ``tael check`` verifies, without changing anything: the WAL's frames, and
through each part's own methods the hot tier, the cold files, the payload blobs and
the full-text index's coverage of the hot tier.

Every finding is a *problem* (damage: ``tael check`` exits 1) or a *note* (a state
the next open resolves by itself: a torn WAL tail, stray cold files, an index
behind a WAL that still holds what it lacks). A problem is a JSON-able dict: the
``part`` at fault (wal, hot, cold, blobs, index), the ``path`` (or URI) and a
``message``, plus details of the part (a WAL problem's offset, length and LSN).

This module sits below :class:`tael.Store`: it takes the parts (hot tier, cold
tier, blob store, text index, WAL directory), never the Store, and
``Store.check()`` hands them over. The CLI opens the store, adds the WAL check and
renders the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._blobs import Payloads
from ._errors import CorruptionError, TaelError
from ._hot import HotTier
from ._layout import EVENT_ATTRS, EVENT_NAME, LOG_BODY, SPAN_ATTRS, SPAN_EVENTS, SPAN_ID, SPAN_START, SPAN_TRACE
from ._models import StoreStats
from ._payloadkeys import PayloadKeys
from ._query.context import ReadContext
from ._repair import frame_problem
from ._search import DOC_LOG, DOC_SPAN, TextIndex, missing_documents
from ._wal import SEGMENT_HEADER_SIZE, Frame, check_segment_header, list_segments, next_valid_frame, parse_frame
from ._words import plural

_MAX_FRAME = (1 << 32) - 1  # any length a WAL frame header can state: ``check`` trusts the checksum

Problem = dict[str, Any]


def problem(part: str, message: str, path: Path | str | None = None, **extra: Any) -> Problem:
    """One finding of damage, as the report lists it."""
    return {"part": part, "path": None if path is None else str(path), "message": message, **extra}


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ---------------------------------------------------------------- the WAL


def check_wal(waldir: Path, applied_lsn: int | None) -> tuple[dict[str, int], list[Problem], list[str]]:
    """Verify every frame of every WAL segment without changing anything: (counts, problems, notes).

    Like opening the store, a torn tail of the last segment is not damage (an
    append a crash interrupted, never acknowledged: the next open cuts it); any
    other frame that fails verification is, and so is a frame past ``applied_lsn``
    that verifies but could not be applied (opening would refuse it)."""
    payloads = Payloads((), 1 << 62)  # which text is payload does not matter for keys

    counts = {"segments": 0, "frames": 0, "bytes": 0}
    problems: list[Problem] = []
    notes: list[str] = []
    if not waldir.is_dir():
        notes.append(f"{waldir}: no WAL directory (created at the next open)")
        return counts, problems, notes
    segments = list_segments(waldir)
    for n, (base, path) in enumerate(segments):
        is_last = n == len(segments) - 1
        buf = path.read_bytes()
        counts["segments"] += 1
        counts["bytes"] += len(buf)
        try:
            check_segment_header(path, buf[:SEGMENT_HEADER_SIZE].ljust(SEGMENT_HEADER_SIZE, b"\0"))
        except CorruptionError as exc:
            problems.append(problem("wal", str(exc), path, offset=exc.offset or 0, length=len(buf), lsn=base))
            continue
        pos = SEGMENT_HEADER_SIZE
        while pos < len(buf):
            parsed = parse_frame(buf, pos, _MAX_FRAME)
            if parsed is not None:
                counts["frames"] += 1
                rtype, end, payload = parsed
                if base + pos >= (applied_lsn or 0):  # replayed at the next open: can it be applied?
                    why = frame_problem(Frame(base + pos, base + end, rtype, payload), payloads)
                    if why is not None:
                        problems.append(
                            problem(
                                "wal",
                                f"frame at byte {pos} (LSN {base + pos}) verifies but cannot be applied: {why}",
                                path,
                                offset=pos,
                                length=end - pos,
                                lsn=base + pos,
                            )
                        )
                pos = end
                continue
            nxt = next_valid_frame(buf, pos + 1, _MAX_FRAME)
            if nxt is None and is_last:
                notes.append(
                    f"{path.name}: torn tail at byte {pos} ({len(buf) - pos} bytes): an append a crash interrupted "
                    "(or one in progress); never acknowledged, cut at the next open"
                )
                break
            stop = len(buf) if nxt is None else nxt
            lsn = base + pos
            applied = applied_lsn is not None and base + stop <= applied_lsn
            problems.append(
                problem(
                    "wal",
                    f"frame at byte {pos} (LSN {lsn}) fails verification, {stop - pos} bytes damaged"
                    + (" (already applied to the hot tier)" if applied else ""),
                    path,
                    offset=pos,
                    length=stop - pos,
                    lsn=lsn,
                )
            )
            if nxt is None:
                break
            pos = nxt
    return counts, problems, notes


# ---------------------------------------------------------------- the tiers of an open store


def check_tiers(parts: ReadContext, stats: Callable[[], StoreStats]) -> dict[str, Any]:
    """Verify an open store's tiers without changing anything: the hot tier reads
    (``stats``: the store's record counts and WAL positions), every cold file of the
    manifest (``ColdTier.check_files``), the blob files the catalog names
    (``BlobStore.missing``) and the full-text index's coverage of the hot tier
    (:func:`index_coverage`). ``parts`` are the open store's tiers, blob store, text
    index and data directory (its ``wal/`` and ``index/``), as its reads see them.

    Returns ``hot`` (None when the hot tier does not read), ``cold``, ``blobs``,
    ``index`` (None when the index does not read), ``problems`` and ``notes``."""
    hot, cold, blobs, root = parts.hot, parts.cold, parts.blobs, parts.path
    problems: list[Problem] = []
    notes: list[str] = []
    hot_report: dict[str, Any] | None = None
    cold_report: dict[str, int] = {"files": 0, "rows": 0, "bytes": 0}
    blob_report: dict[str, int] = {"catalog": 0, "missing": 0}
    damaged: list[tuple[str, str]] = []  # cold damage found and not yet reported
    try:
        st = stats()
        hot_report = {"records": st.hot_records, "applied_lsn": st.applied_lsn, "indexed_lsn": st.indexed_lsn}
        with hot.reader() as txn:
            manifest = hot.manifest(txn)
            digests = hot.blob_digests(txn)
        _damaged, stray = cold.check_files(manifest, cold_report, damaged)
        problems += [problem("cold", what, where) for where, what in damaged]
        damaged.clear()  # reported
        if stray:
            notes.append(
                f"{plural(len(stray), 'file')} under {cold.location} the manifest does not name (left by an "
                "interrupted compaction, or one in progress): removed at the next open"
            )
        blob_report["catalog"] = len(digests)
        for path in blobs.missing(digests):
            blob_report["missing"] += 1
            problems.append(problem("blobs", "payload blob named by the catalog is missing", path))
    except (TaelError, OSError, ValueError) as exc:
        problems += [problem("cold", what, where) for where, what in damaged]  # found before the failure
        problems.append(problem("hot", f"reading the hot tier failed: {one_line(exc)}", root / "hot"))
    index_report = _check_index(hot, parts.text_index, root, parts.payloads.keys, problems, notes)
    if not (root / "index" / "meta.json").exists():
        notes.append("no full-text index: the next open for writing builds it (or run `tael rebuild-index`)")
    return {
        "hot": hot_report,
        "cold": cold_report,
        "blobs": blob_report,
        "index": index_report,
        "problems": problems,
        "notes": notes,
    }


def _check_index(
    hot: HotTier,
    text_index: Callable[[], TextIndex],
    root: Path,
    payload_keys: PayloadKeys,
    problems: list[Problem],
    notes: list[str],
) -> dict[str, Any] | None:
    """Does the full-text index lag the tiers? Records the WAL can no longer bring
    back that have no document are damage (text search misses them until
    ``tael rebuild-index``); a lag the WAL still holds is indexed at the next open.
    Returns the coverage (None when the index does not read)."""
    try:
        cov = index_coverage(hot, text_index, root / "wal", root / "index", payload_keys)
    except (TaelError, OSError, ValueError) as exc:
        problems.append(problem("index", f"reading the full-text index failed: {one_line(exc)}", root / "index"))
        return None
    if not cov.get("built"):
        return cov
    missing = cov["missing"]
    if sum(missing.values()):
        what = ", ".join(f"{n:,} {signal}" for signal, n in missing.items() if n)
        problems.append(
            problem(
                "index",
                f"the full-text index lags the hot tier: {what} stored before WAL position "
                f"{cov['replayable_from']:,} have no document, so text search misses them; run "
                f"`tael rebuild-index --data {root}` (with the store closed)",
                root / "index",
                missing=missing,
            )
        )
    indexed, applied = cov["indexed_lsn"], cov["applied_lsn"]
    if indexed < applied and cov["replayable_from"] == indexed:
        notes.append(
            f"the full-text index is {applied - indexed:,} WAL bytes behind the hot tier (indexed LSN {indexed:,}, "
            f"applied {applied:,}): the WAL holds them and the next open for writing indexes them"
        )
    return cov


def index_coverage(
    hot: HotTier, text_index: Callable[[], TextIndex], wal_dir: Path, index_dir: Path, payload_keys: PayloadKeys
) -> dict[str, Any]:
    """Whether the full-text index holds a document for every hot-tier record it must:
    records with text stored before the position the next open would index again
    from. That position is the recorded indexed LSN when the WAL (``wal_dir``) still
    holds everything from it on, else the applied LSN (the WAL cannot bring those
    records back: only ``rebuild_index`` can). ``text_index`` opens (or returns) the
    index at ``index_dir``; ``payload_keys`` are the span attributes that are text
    (``Settings.payload_attributes``). Returns the positions, records checked and
    missing per signal, and a few missing ones."""

    def texty(attrs: dict[str, Any] | None, event: str | None = None) -> bool:  # str, or a long one's digest
        if not attrs:
            return False
        keys = payload_keys.of(attrs) if event is None else payload_keys.of_event(event, attrs)
        return any(type(attrs[k]) in (str, bytes) for k in keys)

    with hot.reader() as txn:
        applied = hot.applied_lsn()
        indexed = hot.indexed_lsn()
        segments = list_segments(wal_dir) if wal_dir.is_dir() else []
        wal_from = segments[0][0] if segments else None
        report: dict[str, Any] = {"applied_lsn": applied, "indexed_lsn": indexed, "wal_from": wal_from}
        if indexed is None or not (index_dir / "meta.json").exists():
            return report | {"built": False}  # the next open builds it from the tiers
        covered = wal_from is not None and wal_from <= indexed
        bound = indexed if covered else applied
        index = text_index()
        index.index.reload()  # at least as new as the indexed LSN just read

        def logs() -> Iterator[tuple[int, int, int, int]]:
            for (t, lsn, idx), f, _lsn in hot.records(txn, "logs"):
                if lsn < bound and f[LOG_BODY]:
                    yield t, lsn, idx, 0

        def spans() -> Iterator[tuple[int, int, int, int]]:
            for _key, f, lsn in hot.records(txn, "spans"):
                if lsn < bound and (
                    texty(f[SPAN_ATTRS]) or any(texty(ev[EVENT_ATTRS], ev[EVENT_NAME]) for ev in f[SPAN_EVENTS])
                ):
                    trace, span = f[SPAN_TRACE], f[SPAN_ID]
                    yield (
                        f[SPAN_START],
                        int.from_bytes(trace[:8]),
                        int.from_bytes(trace[8:]),
                        int.from_bytes(span),
                    )

        out: dict[str, Any] = {
            "built": True,
            "replayable_from": bound,
            "checked": {},
            "missing": {},
            "examples": [],
        }
        for name, signal, expected in (("spans", DOC_SPAN, spans()), ("logs", DOC_LOG, logs())):
            checked, missing, examples = missing_documents(index, signal, expected)
            out["checked"][name] = checked
            out["missing"][name] = missing
            out["examples"] += [{"signal": name, "time_ns": e[0], "keys": list(e[1:])} for e in examples]
    return report | out
