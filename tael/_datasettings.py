"""The settings that shape stored data, kept in the data directory (``settings.json``).

Payload keys decide what is indexed and kept as blobs; retention and the hot window decide
what is kept and where; the cold file settings shape the Parquet files. A process that
opened the store with other values than the ones its data was written with would index,
keep or drop data differently from every other process (``tael search`` without the
``--config`` the server runs with answered ``[]``). So the data directory records them
(docs/format/settings.md) and every open resolves them the same way:

- a field left at its built-in default means "as stored";
- a field given with the stored value changes nothing;
- a field given with another value is a change: fields whose change is safe (a longer
  retention, the hot window, cold file shape, the blob threshold) are updated in the file
  by a writable open and logged; changes that would delete data or leave it inconsistent
  are refused with :class:`~tael.SettingsConflictError` naming the field and the command
  that applies them: a shorter retention (``tael settings set``: a one-off command run with
  a development config must not make every later server delete data) and other payload
  keys (``tael rebuild-index``: what the search index holds). A read-only open never
  writes: it uses a changed value for itself and logs that (its retention cannot delete
  anything), except for payload keys, which fail the same way.

Going back to a built-in default is explicit too: ``tael settings set NAME=VALUE`` or
:func:`change_stored`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import SettingsConflictError, StorageError
from ._fsutil import atomic_write
from ._settings import Settings

log = logging.getLogger(__name__)

FILE_NAME = "settings.json"
VERSION = 1

APPLIED_BY: dict[str, str] = {"payload_attributes": "tael rebuild-index"}
"""Stored fields a plain open may not change, with the command that applies a change (it
rebuilds what depends on the field, then stores the new value)."""

STORED: tuple[str, ...] = (
    "payload_attributes",
    "payload_blob_min_bytes",
    "hot_window_s",
    "retention_spans_days",
    "retention_logs_days",
    "retention_metrics_days",
    "retention_metrics_5m_days",
    "retention_metrics_1h_days",
    "retention_comments_days",
    "cold_target_file_bytes",
    "cold_row_group_rows",
    "cold_compression_level",
)
"""The Settings fields kept with the data, in the file's order."""

_DEFAULTS = Settings()


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _from_json(name: str, value: Any) -> Any:
    return tuple(value) if isinstance(getattr(_DEFAULTS, name), tuple) and isinstance(value, list) else value


def read_stored(root: Path) -> dict[str, Any] | None:
    """The stored values (field name -> value), or None for a directory without the file
    (created by a tael before it, or not yet a store). A file that does not parse, or holds
    values Settings refuses, raises StorageError naming it: guessing would change the data."""
    path = root / FILE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
            raise ValueError("not an object with a 'settings' object")
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}; this tael reads version {VERSION}")
        values = {k: _from_json(k, v) for k, v in doc["settings"].items() if k in STORED}
        dataclasses.replace(_DEFAULTS, **values)  # validates every value
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{path} is damaged: {exc}; fix or remove it (tael then stores the settings given)") from exc
    return values


def write_stored(root: Path, values: Mapping[str, Any]) -> None:
    """Publish ``values`` (every field of STORED) as the directory's settings.json."""
    doc = {"version": VERSION, "settings": {name: _jsonable(values[name]) for name in STORED}}
    atomic_write(root / FILE_NAME, json.dumps(doc, indent=2).encode() + b"\n")


def resolve(root: Path, given: Settings, *, writable: bool) -> Settings:
    """The settings a store on ``root`` runs with: ``given`` with its stored fields
    resolved against the directory's file as the module docstring says. A writable open
    writes the file when it is missing (a new store, or one made by an earlier tael) or
    when a field changed."""
    stored = read_stored(root)
    if stored is None:
        if writable:
            write_stored(root, {name: getattr(given, name) for name in STORED})
        return given
    effective = {name: stored.get(name, getattr(given, name)) for name in STORED}
    changed: dict[str, tuple[Any, Any]] = {}
    for name in STORED:
        value = getattr(given, name)
        if name not in stored or value == stored[name] or value == getattr(_DEFAULTS, name):
            continue
        if name in APPLIED_BY:
            raise SettingsConflictError(
                f"Settings.{name} is {value!r} but the data in {root} was written with {stored[name]!r} "
                f"(kept in {root / FILE_NAME}); open without it to use the stored value, or run "
                f"`{APPLIED_BY[name]}` with the new value to apply it to the data already stored"
            )
        if name.startswith("retention_") and value < stored[name] and writable:
            raise SettingsConflictError(
                f"Settings.{name} is {value!r} but {root} keeps data for {stored[name]!r} days (kept in "
                f"{root / FILE_NAME}): a shorter retention deletes data, so an open does not change it; run "
                f"`tael settings set --data {root} {name}={value!r}` to change it for every process"
            )
        changed[name] = (stored[name], value)
        effective[name] = value
    for name, (old, new) in changed.items():
        if writable:
            log.info("Settings.%s of %s changed from %r to %r (stored in %s)", name, root, old, new, FILE_NAME)
        else:
            log.info("Settings.%s is %r for this read-only open of %s (stored: %r)", name, new, root, old)
    if writable and (changed or set(STORED) - set(stored)):
        write_stored(root, effective)
    return dataclasses.replace(given, **effective)


def change_stored(root: Path, **changes: Any) -> dict[str, Any]:
    """Set stored fields explicitly (back to a built-in default included) and return the
    new stored values. The caller holds the directory's lock (no store open on it), and
    a field in APPLIED_BY is refused here: its command applies it. Unknown fields and
    bad values raise ValueError naming them."""
    unknown = sorted(set(changes) - set(STORED))
    if unknown:
        raise ValueError(f"not a setting kept with the data: {', '.join(unknown)} (those are: {', '.join(STORED)})")
    for name in changes:
        if name in APPLIED_BY:
            raise SettingsConflictError(f"Settings.{name} changes with `{APPLIED_BY[name]}`, which re-applies it")
    current = read_stored(root)
    values = {name: getattr(_DEFAULTS, name) for name in STORED} | (current or {})
    values |= {k: _from_json(k, v) for k, v in changes.items()}
    dataclasses.replace(_DEFAULTS, **{k: values[k] for k in STORED})  # validates
    write_stored(root, values)
    return values


def chosen_payload_keys(keys: Sequence[str] | None, settings: Settings | None) -> tuple[str, ...] | None:
    """The payload keys ``rebuild_index`` is to apply, checked: ``keys`` when given, else
    ``settings.payload_attributes`` when it is not the built-in default; None: the stored
    keys stay."""
    if keys is None and settings is not None and settings.payload_attributes != _DEFAULTS.payload_attributes:
        keys = settings.payload_attributes
    if keys is None:
        return None
    return dataclasses.replace(_DEFAULTS, payload_attributes=tuple(keys)).payload_attributes  # validates


def store_payload_keys(root: Path, keys: tuple[str, ...], settings: Settings | None) -> None:
    """Store payload keys ``chosen_payload_keys`` returned. The caller holds the directory's lock."""
    values = {name: getattr(settings or _DEFAULTS, name) for name in STORED} | (read_stored(root) or {})
    values["payload_attributes"] = keys
    write_stored(root, values)
