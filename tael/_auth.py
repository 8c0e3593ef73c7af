"""Who may call what on ``tael serve`` and on a standby's replication endpoint.

One pure ASGI middleware, :class:`Guard`, wraps the app. For each request, in order:

1. **Host** (when the server is bound to a loopback address, or names were
   configured with ``--allowed-host``): a ``Host`` header that is not a loopback
   name (``localhost``, ``127.0.0.0/8``, ``[::1]``, any port) or a configured one
   gets 421. This stops DNS rebinding: a web page whose name resolves to
   127.0.0.1 reaches the port, but its requests carry its own name.
2. **Token** (when an auth file is configured): ``Authorization: Bearer <token>``
   looked up in constant time; none or an unknown one gets 401 with
   ``WWW-Authenticate: Bearer``, a token without the route's scope 403.
3. **Replication on?** ``/replication/*`` answers 404 unless the store is a
   standby, a leader with replicas, or was promoted (its old leader must hear
   that it is fenced off).
4. **Content type** of the routes that change state outside OTLP: only their own
   (``application/x-tael-wal``, ``application/json``), which a browser never sends
   cross-site without a CORS preflight that tael does not answer; so a form POST
   or a ``text/plain`` POST can never promote a standby or feed it WAL.

The route -> scope table is :data:`RULES`, in one place. The middleware never
reads a request body. Error responses (status >= 400) pass through
:func:`scrub`, which replaces the data directory's absolute path in their body
with ``<data>``. Docs: docs/server.md, "Security".
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import ssl
import tomllib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPES = ("ingest", "query", "admin", "replication")
"""``ingest``: OTLP writes (``/v1/*``). ``query``: the query API (``/api/*``) and
``/metrics``. ``admin``: promotion (``/replication/promote``) and any maintenance
route. ``replication``: ``/replication/status`` and ``/replication/wal``, between
stores (a leader's token for its standbys)."""

OPEN = "open"  # no token needed
ANY = "any"  # any valid token (paths no route serves: they 404 only once authenticated)
WAL_MEDIA = "application/x-tael-wal"
JSON_MEDIA = "application/json"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Rule:
    """What a path needs: ``scope`` (one of :data:`SCOPES`, ``OPEN`` or ``ANY``),
    the only content types its non-GET requests may carry (empty: the route checks
    its own), and whether it exists only on a replicating store."""

    scope: str
    content_types: tuple[str, ...] = ()
    replication: bool = False


RULES: dict[str, Rule] = {
    "/health/live": Rule(OPEN),
    "/health/ready": Rule(OPEN),
    "/v1/traces": Rule("ingest"),  # OTLP: the handler accepts only protobuf and JSON (415 otherwise)
    "/v1/logs": Rule("ingest"),
    "/v1/metrics": Rule("ingest"),
    "/api/": Rule("query"),
    "/metrics": Rule("query"),
    "/replication/status": Rule("replication", replication=True),
    "/replication/wal": Rule("replication", (WAL_MEDIA,), replication=True),
    "/replication/promote": Rule("admin", (JSON_MEDIA,), replication=True),
    "/replication/": Rule("replication", replication=True),
    "/admin/": Rule("admin", (JSON_MEDIA,)),
}
"""Path (exact, or a prefix when it ends with ``/``) -> Rule; anything else needs
any valid token (:data:`ANY`)."""


def rule_for(path: str) -> Rule:
    """The :class:`Rule` of a request path: an exact entry, else the longest prefix."""
    exact = RULES.get(path)
    if exact is not None:
        return exact
    best: tuple[int, Rule] | None = None
    for prefix, rule in RULES.items():
        if prefix.endswith("/") and path.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), rule)
    return best[1] if best is not None else Rule(ANY)


def route_path(scope: Scope) -> str:
    """The path the app's routes match: ``scope["path"]`` without ``root_path``, as
    Starlette routes it. When the app is mounted under a prefix (``Mount("/tael",
    create_app(...))``) ``path`` still carries the prefix; judging it would match no
    rule and let every request through as an unknown path."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    scopes: frozenset[str]
    label: str


class Tokens:
    """The bearer tokens of an auth file, each with its scopes. Only SHA-256 digests
    are kept; :meth:`lookup` compares every entry with ``hmac.compare_digest``."""

    def __init__(self, entries: Sequence[_Entry], source: str) -> None:
        self._entries = tuple(entries)
        self.source = source

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> frozenset[str] | None:
        """The scopes of ``token`` (None: no such token). Digests of equal length are
        compared against every entry, without an early exit, so the time taken says
        nothing about how much of a token matched."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: frozenset[str] | None = None
        for e in self._entries:
            if hmac.compare_digest(digest, e.digest):
                found = e.scopes
        return found

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, Iterable[str]]], source: str = "<tokens>") -> Tokens:
        """Tokens from ``(token, scopes)`` pairs, validated like an auth file."""
        return cls._build([{"token": t, "scopes": list(s)} for t, s in entries], source)

    @classmethod
    def load(cls, path: str | Path) -> Tokens:
        """Read and validate an auth file (TOML)::

            [[tokens]]
            name = "collector"          # optional, names the entry in errors
            token = "..."               # at least 16 printable ASCII characters
            scopes = ["ingest"]         # of ingest, query, admin, replication

        Raises ConfigurationError naming the file and the entry (never the token)."""
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"auth file {path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read auth file {path}: {exc.strerror or exc}") from None
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if mode & 0o004:
            log.warning("auth file %s is readable by every user of this machine (chmod 600 it)", path)
        unknown = sorted(set(table) - {"tokens"})
        if unknown:
            raise ConfigurationError(f"auth file {path}: unknown key(s) {', '.join(unknown)} (only [[tokens]])")
        entries = table.get("tokens")
        if not isinstance(entries, list) or not entries:
            raise ConfigurationError(f"auth file {path}: no [[tokens]] entries")
        return cls._build(entries, str(path))

    @classmethod
    def _build(cls, entries: list[Any], source: str) -> Tokens:
        out: list[_Entry] = []
        seen: dict[bytes, str] = {}
        for i, entry in enumerate(entries, 1):
            label = f"entry {i}"
            where = f"auth file {source}: [[tokens]] {label}"
            if not isinstance(entry, dict):
                raise ConfigurationError(f"{where} is not a table")
            name = entry.get("name")
            if name is not None:
                if not isinstance(name, str) or not name:
                    raise ConfigurationError(f"{where}: name must be a non-empty string")
                label = f"entry {i} ({name!r})"
                where = f"auth file {source}: [[tokens]] {label}"
            unknown = sorted(set(entry) - {"token", "scopes", "name"})
            if unknown:
                raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)} (token, scopes, name)")
            token = entry.get("token")
            if token is None:
                raise ConfigurationError(f"{where}: no token")
            if not isinstance(token, str):
                raise ConfigurationError(f"{where}: token must be a string")
            if not token:
                raise ConfigurationError(f"{where}: token is empty")
            if not all(0x21 <= ord(c) <= 0x7E for c in token):
                raise ConfigurationError(
                    f"{where}: token must be printable ASCII without spaces (it travels in an HTTP header)"
                )
            if len(token) < MIN_TOKEN_CHARS:
                raise ConfigurationError(
                    f"{where}: token is {len(token)} characters, fewer than {MIN_TOKEN_CHARS}; make one with "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
            scopes = entry.get("scopes")
            if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
                raise ConfigurationError(f"{where}: scopes must be a non-empty list of {', '.join(SCOPES)}")
            bad = [s for s in scopes if s not in SCOPES]
            if bad:
                raise ConfigurationError(f"{where}: unknown scope {bad[0]!r} (known: {', '.join(SCOPES)})")
            digest = hashlib.sha256(token.encode()).digest()
            if digest in seen:
                raise ConfigurationError(f"{where}: the same token as {seen[digest]}")
            seen[digest] = label
            out.append(_Entry(digest, frozenset(scopes), label))
        return cls(out, source)


def read_token_file(path: str | Path, what: str) -> str:
    """A bearer token from a file (its only content, surrounding whitespace ignored),
    for a client: a leader shipping to its standbys, ``tael promote --url``."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigurationError(f"cannot read {what} {path}: {reason}") from None
    if not token:
        raise ConfigurationError(f"{what} {path} is empty")
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise ConfigurationError(f"{what} {path} must hold one token of printable ASCII without spaces")
    return token


# ---------------------------------------------------------------- hosts


def is_loopback(host: str) -> bool:
    """Whether a bind address or Host name is loopback (``localhost``, 127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a ``Host`` header without its port (``[::1]:4318`` -> ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def check_allowed_hosts(names: Iterable[str]) -> tuple[str, ...]:
    """Validate ``--allowed-host`` names (``tael.example.com``, ``10.0.0.5``,
    ``[fd00::5]``): bare names or addresses, no scheme, port or path. Returns them
    lower-cased, IPv6 addresses without brackets."""
    out = []
    for n in names:
        name = n.strip().strip("[]").lower().rstrip(".") if isinstance(n, str) else ""
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if not name or any(c in name for c in "/:@ \t"):
                raise ConfigurationError(
                    f"allowed host {n!r} must be a bare host name or address, without scheme, port or path"
                ) from None
        out.append(name)
    return tuple(out)


# ---------------------------------------------------------------- scrubbing


def scrub(body: bytes, content_type: str, roots: Sequence[tuple[str, str]]) -> bytes:
    """``body`` with each absolute path in ``roots`` (path, replacement) replaced, in
    the body's own encoding: JSON and text by bytes, a protobuf ``google.rpc.Status``
    and msgpack by decoding and encoding again (lengths are encoded inside)."""
    if not roots:
        return body
    media = content_type.split(";")[0].strip().lower()

    def text(s: str) -> str:
        for path, repl in roots:
            s = s.replace(path, repl)
        return s

    if media == "application/x-protobuf":
        status = _decode_status(body)
        if status is None:
            return body
        from ._otlp import encode_status

        return encode_status(media, status[0], text(status[1]))
    if media == WAL_MEDIA:
        try:
            value = msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException):
            return body
        packed: bytes = msgpack.packb(_walk(value, text), use_bin_type=True)
        return packed
    out = body
    for path, repl in roots:
        for form in {path, json.dumps(path)[1:-1]}:
            out = out.replace(form.encode(), repl.encode())
    return out


def _walk(value: Any, text: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [_walk(v, text) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, text) for k, v in value.items()}
    return value


def _decode_status(body: bytes) -> tuple[int, str] | None:
    """A google.rpc.Status of field 1 (code) and field 2 (message) only, else None."""
    code, message, i = 0, "", 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            if i >= len(body) or shift > 63:
                raise ValueError("truncated")
            b = body[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    try:
        while i < len(body):
            key = varint()
            if key == 0x08:
                code = varint()
                if code >= 1 << 63:
                    code -= 1 << 64
            elif key == 0x12:
                n = varint()
                if i + n > len(body):
                    return None
                message = body[i : i + n].decode()
                i += n
            else:
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    return code, message


# ---------------------------------------------------------------- the middleware


class Guard:
    """The pure ASGI middleware of this module (see its docstring for the checks).

    ``tokens``: None serves without authentication. ``allowed_hosts``: None does no
    Host check; a tuple checks the Host against loopback names and these.
    ``replicating``: whether ``/replication/*`` exists now (asked per request: a
    promotion changes it). ``roots``: absolute paths to hide in error bodies, each
    with its replacement. ``refused``: called with the status of each request the
    guard answers itself (for ``tael_http_refused_total``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Tokens | None = None,
        allowed_hosts: Sequence[str] | None = None,
        replicating: Callable[[], bool] = lambda: True,
        roots: Sequence[tuple[str, str]] = (),
        refused: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.allowed_hosts = None if allowed_hosts is None else frozenset(check_allowed_hosts(allowed_hosts))
        self.replicating = replicating
        self.roots = sorted(roots, key=lambda r: len(r[0]), reverse=True)
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # tael serves none; refuse before any route sees it
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", ()):
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        path = route_path(scope)
        problem = self._check(scope, path, headers)
        if problem is not None:
            code, message, extra = problem
            if self.refused is not None:
                self.refused(code)
            await _reply(send, path, headers.get("content-type", ""), code, message, extra)
            return
        if not self.roots or scope.get("method") == "HEAD":  # a HEAD answer has no body to scrub
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Scrubber(send, self.roots).send)

    def _check(self, scope: Scope, path: str, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        if self.allowed_hosts is not None:
            host = headers.get("host")
            if not host:
                return 421, "the request has no Host header", {}
            name = host_name(host)
            if not is_loopback(name) and name not in self.allowed_hosts:
                return (
                    421,
                    f"Host {host!r} is not a name of this server: it answers to localhost, 127.0.0.1 and [::1]"
                    + (f" and {', '.join(sorted(self.allowed_hosts))}" if self.allowed_hosts else "")
                    + " (add names with --allowed-host); a web page reaching a loopback server through its own "
                    "DNS name (DNS rebinding) is refused this way",
                    {},
                )
        rule = rule_for(path)
        if self.tokens is not None and rule.scope != OPEN:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.strip().partition(" ")
            token = token.strip()
            if not auth:
                return 401, "this server requires a bearer token (Authorization: Bearer <token>)", _challenge(None)
            if scheme.lower() != "bearer" or not token:
                return 401, "the Authorization header is not 'Bearer <token>'", _challenge("invalid_request")
            scopes = self.tokens.lookup(token)
            if scopes is None:
                return 401, "unknown bearer token", _challenge("invalid_token")
            if rule.scope != ANY and rule.scope not in scopes:
                return (
                    403,
                    f"this token does not have the {rule.scope!r} scope that {path} needs",
                    _challenge("insufficient_scope", rule.scope),
                )
        if rule.replication and not self.replicating():
            return (
                404,
                "replication is off on this store: it is not a standby and ships to no replicas",
                {},
            )
        method = scope.get("method", "GET")
        if rule.content_types and method not in ("GET", "HEAD", "OPTIONS"):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in rule.content_types:
                return (
                    415,
                    f"{path} takes only {' or '.join(rule.content_types)}, not {ctype or 'a body without a type'!r}",
                    {},
                )
        return None


def _challenge(error: str | None, scope: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="tael"'
    if error is not None:
        value += f', error="{error}"'
    if scope is not None:
        value += f', scope="{scope}"'
    return {"www-authenticate": value}


async def _reply(send: Send, path: str, ctype: str, code: int, message: str, extra: dict[str, str]) -> None:
    """An error answered by the guard: a google.rpc.Status on OTLP routes (in the
    request's content type when it is one of OTLP's), JSON ``{"error": ...}`` elsewhere."""
    media = ctype.split(";")[0].strip().lower()
    if path.startswith("/v1/"):
        from ._otlp import CONTENT_TYPES, encode_status

        media = media if media in CONTENT_TYPES else JSON_MEDIA
        body = encode_status(media, code, message)
    else:
        media = JSON_MEDIA
        body = json.dumps({"error": message}).encode()
    raw_headers = [
        (b"content-type", media.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in extra.items()),
    ]
    await send({"type": "http.response.start", "status": code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class _Scrubber:
    """Wraps ``send``: an error response (>= 400) is held until its body is complete
    (error bodies are small; past 1 MiB it is passed on as it is), scrubbed and sent
    with its new length. Other responses pass straight through."""

    _LIMIT = 1 << 20

    def __init__(self, send: Send, roots: Sequence[tuple[str, str]]) -> None:
        self._send = send
        self._roots = roots
        self._start: Message | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if int(message.get("status", 200)) >= 400:
                self._start = message
                return
            await self._send(message)
            return
        if kind != "http.response.body" or self._start is None:
            await self._send(message)
            return
        chunk = bytes(message.get("body", b""))
        self._chunks.append(chunk)
        self._size += len(chunk)
        more = bool(message.get("more_body", False))
        if more and self._size <= self._LIMIT:
            return
        start, self._start = self._start, None
        body = b"".join(self._chunks)
        self._chunks = []
        if more:  # too large to hold: send what came as it is
            await self._send(start)
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
            return
        headers = list(start.get("headers", []))
        ctype = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
        body = scrub(body, ctype, self._roots)
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


def data_roots(store_path: Path, cold_location: str | None = None) -> list[tuple[str, str]]:
    """The absolute paths to hide in error bodies of a server over ``store_path``: the
    data directory (as given, absolute and resolved) and a local cold location."""
    roots: dict[str, str] = {}
    for p in (store_path.resolve(), store_path.absolute()):
        roots[str(p)] = "<data>"
    if cold_location and "://" not in cold_location:
        cold = Path(cold_location)
        for p in (cold.resolve(), cold.absolute()):
            if not str(p).startswith(tuple(roots)):
                roots[str(p)] = "<cold>"
    return [(k, v) for k, v in roots.items() if k not in ("/", "")]


# ---------------------------------------------------------------- serving


def server_tokens(settings: Settings, host: str) -> Tokens | None:
    """The tokens a server bound to ``host`` requires (``Settings.auth_file``), after
    the safe-default check: no auth file on a non-loopback address is refused unless
    ``Settings.allow_unauthenticated``. Validates the TLS files too, so that every
    configuration error comes before the store is opened."""
    tokens = Tokens.load(settings.auth_file) if settings.auth_file is not None else None
    if tokens is None and not is_loopback(host) and not settings.allow_unauthenticated:
        raise ConfigurationError(
            f"refusing to serve on {host or 'every address'!r} without authentication: anyone who reaches the "
            "port could write, read everything and promote a standby. Give --auth-file FILE (Settings.auth_file; "
            "docs/server.md, Security), bind to 127.0.0.1, or pass --allow-unauthenticated "
            "(Settings.allow_unauthenticated) if only trusted clients can reach it"
        )
    tls_options(settings)
    check_allowed_hosts(settings.allowed_hosts)
    return tokens


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``ssl_certfile``/``ssl_keyfile`` from ``Settings.tls_cert_file`` and
    ``tls_key_file``, checked by loading them (a clear error rather than uvicorn's)."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        return {}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve HTTPS: TLS certificate {cert} or key {key}: {exc.strerror or exc}"
        ) from None
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"cannot serve HTTPS: TLS certificate {cert} and key {key} do not load as a PEM chain and its key: "
            f"{exc.reason or exc}"
        ) from None
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def host_check(settings: Settings, host: str) -> tuple[str, ...] | None:
    """The extra Host names a server bound to ``host`` accepts: a tuple (checked) on a
    loopback bind or once ``Settings.allowed_hosts`` is set, else None (no check)."""
    if is_loopback(host) or settings.allowed_hosts:
        return check_allowed_hosts(settings.allowed_hosts)
    return None
