"""The exception hierarchy: everything tael raises on purpose derives from TaelError.

Subclasses also inherit the builtin a caller would naturally catch, so
``except ValueError`` still sees a ValidationError.
"""

from __future__ import annotations


class TaelError(Exception):
    """Root of every error tael raises on purpose."""


class ValidationError(TaelError, ValueError):
    """A record in a batch is invalid; nothing of the batch was written.

    ``index`` is the record's position in the batch and ``field`` the field at
    fault (dotted for nested values, e.g. ``attributes.http.status``).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class StorageError(TaelError, OSError):
    """Writing to disk failed (disk full, I/O error); the write was not acknowledged."""


class CorruptionError(TaelError):
    """Stored data failed verification; names the file and byte offset at fault."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class StoreLockedError(TaelError, RuntimeError):
    """Another process holds the data directory open for writing; ``pid`` is the one its
    lock file names ("" when unknown)."""

    def __init__(self, message: str, pid: str = "") -> None:
        super().__init__(message)
        self.pid = pid


class StoreClosedError(TaelError, RuntimeError):
    """The store (or writer) was used after close()."""


class ReadOnlyError(TaelError, PermissionError):
    """A write was attempted on a store opened with ``read_only=True``."""


class ReplicationError(TaelError):
    """WAL shipping failed: an insert's standby acknowledgements did not arrive in
    time (the write is durable on the leader but was not acknowledged), a standby
    refused what it was sent, or a standby needs records its leader no longer keeps."""


class StandbyError(ReadOnlyError):
    """A client write reached a standby: standbys take writes only from their leader
    until promoted (``Store.promote()``, ``tael promote``)."""


class ConfigurationError(TaelError, ValueError):
    """A configuration file or option is invalid or unusable (an auth file, a token
    file, TLS certificate files, a bind address that needs authentication); the
    message names the file, entry or option at fault, never a secret."""


class SettingsConflictError(ConfigurationError):
    """A setting given at open differs from the value the data directory keeps
    (``settings.json``) and cannot change by opening alone: the message names the field,
    both values and the command that applies the change (``tael rebuild-index``)."""
