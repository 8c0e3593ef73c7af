"""The ``tael`` command line. Library code never prints; this module does.

Only click and the standard library are imported at module level: tael's
storage modules, rich and pyarrow are imported inside the commands that need
them. Every command that reads or writes a store takes ``--data DIR`` and
``--output table|json`` (``csv`` too where the result is rows); JSON output is
the result of the matching API call (dataclasses through ``dataclasses.asdict``),
CSV its records one per row. Tables are fitted to the terminal and CSV written by
``tael._clitables``. A ``tael.TaelError`` or
``ValueError`` from the library ends the command with a one-line
``error: ...`` on stderr and exit code 1.

One module of ~1,700 lines, over the ~800 a module should stay under: each command
is a short, independent function (options, one API call, rendering), read one at
a time; splitting them by command group would spread the shared options and
rendering helpers over several modules for no gain in reading.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._query.args import SEVERITY_NAMES, severity
from ._words import plural

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ._demo import DemoResult
    from ._models import LogRecord, MetricBucket, MetricPoint, Span, StoreStats, SummaryReport
    from ._payloadkeys import PayloadKeys
    from ._store import Store

DEFAULT_DATA = "./tael-data"
SPAN_KINDS = ("internal", "server", "client", "producer", "consumer")
SPAN_STATUSES = ("unset", "ok", "error")
SEVERITIES = SEVERITY_NAMES
"""Names ``--min-severity`` accepts besides a number: the lowest OpenTelemetry severity of each range
(the API's own table, ``tael._query.args.SEVERITY_NAMES``)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}


# ---------------------------------------------------------------- the group, errors


class CliError(click.ClickException):
    """A command's own failure, shown like the library's: ``error: ...``, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turns the library's errors into ``error: ...`` and exit code 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from ._errors import TaelError

            if isinstance(exc, (TaelError, ValueError)):
                click.echo(f"error: {_one_line(exc)}", err=True)
                ctx.exit(1)
            raise


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@click.group(cls=_Group)
@click.version_option("0.1.0", prog_name="tael")
@click.option("-v", "--verbose", is_flag=True, help="Log tael's internal messages (replay, repairs) to stderr.")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, exists=True),
    envvar="TAEL_CONFIG",
    help="A TOML file of Settings fields (cold_uri, replicas, retention...) for every store the command opens.",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool, config: str | None) -> None:
    """tael: an embeddable telemetry store for spans, logs and metrics.

    Every command that works on a store takes --data DIR (default ./tael-data)
    and --output table|json (and csv where the answer is rows). Severities are
    0..24 or trace, debug, info, warn, error, fatal. Times are int nanoseconds since the epoch,
    ISO-8601 with a timezone (2024-05-01T12:00:00Z), "now" or relative to now
    ("-15m", "-2h", "-1d").
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per WAL shipment otherwise
    ctx.obj = {"config": config}


# ---------------------------------------------------------------- option helpers


def _data_option(default: str = DEFAULT_DATA) -> Callable[[Any], Any]:
    return click.option(
        "--data",
        "-d",
        default=default,
        show_default=True,
        type=click.Path(file_okay=False),
        help="Data directory of the store.",
    )


def _data_and_argument(default: str | None = DEFAULT_DATA) -> Callable[[Any], Any]:
    """``--data DIR`` and, for a command that took its directory as an argument before
    every command took ``--data``, the optional argument ``DATA`` as its alias; the
    command gets ``data`` (``default`` when neither is given). Both naming different
    directories is a usage error."""
    shown = f" (default: {default})" if default is not None else ""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--data",
            "-d",
            "data_option",
            default=None,
            type=click.Path(file_okay=False),
            help=f"Data directory of the store{shown}; the argument DATA is the same.",
        )(f)
        f = click.argument("data_arg", metavar="[DATA]", required=False, type=click.Path(file_okay=False))(f)
        return f

    return decorate


def _one_data(argument: str | None, option: str | None, default: str | None = DEFAULT_DATA) -> str | None:
    """The data directory of ``DATA`` or ``--data`` (see ``_data_and_argument``)."""
    import os.path

    if argument is not None and option is not None and os.path.abspath(argument) != os.path.abspath(option):
        raise click.UsageError(f"DATA ({argument}) and --data ({option}) name different directories: give one")
    return option if option is not None else argument if argument is not None else default


_output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Human tables, or the result as JSON.",
)
_rows_output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Human tables, the result as JSON, or its rows as CSV (a header row of field names; "
    "nested values such as attributes as JSON text).",
)
"""``--output`` of a command whose result is rows: csv beside table and json."""


if TYPE_CHECKING:
    _IntParam = click.ParamType[int, Any]  # generic in click >= 8.2
else:
    _IntParam = click.ParamType


class TimeType(_IntParam):
    """A point in time as int nanoseconds: ns, ISO-8601 with a timezone, "now" or "-<n><s|m|h|d>"."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if text == "now":
            return time.time_ns()
        m = re.fullmatch(r"-(\d+(?:\.\d+)?)([smhd])", text)
        if m:
            return time.time_ns() - int(float(m[1]) * _UNITS_NS[m[2]])
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not a time: give int nanoseconds, ISO-8601 with a timezone, 'now' or '-15m'",
                param,
                ctx,
            )
        if dt.tzinfo is None or dt.utcoffset() is None:
            self.fail(f"{text!r} has no timezone: add one (2024-05-01T12:00:00Z or +02:00)", param, ctx)
        return datetime_ns(dt)


def datetime_ns(dt: datetime) -> int:
    """An aware datetime as exact int nanoseconds since the epoch."""
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000


class SeverityType(_IntParam):
    """An OpenTelemetry severity number 0..24 or a name (trace, debug, info, warn, error, fatal),
    through the parser the API and the HTTP server use (``tael._query.args.severity``)."""

    name = "SEVERITY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return severity(value, param.opts[0] if param is not None and param.opts else "severity")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeType()
SEVERITY = SeverityType()


def parse_attr(text: str) -> tuple[str, Any]:
    """``key=value``; the value is JSON when it parses as JSON (``200``, ``true``,
    ``"200"``), the raw text otherwise."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not key=value", param_hint="'--attr'")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _attrs(pairs: Sequence[str]) -> dict[str, Any] | None:
    return dict(parse_attr(p) for p in pairs) or None


_attr_option = click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Attribute (or resource attribute) filter, repeatable; VALUE is parsed as JSON when it parses "
    '(200, true, "200"), else taken as a string.',
)
_start_option = click.option("--start", type=TIME, default=None, help="Only records at or after this time.")
_end_option = click.option("--end", type=TIME, default=None, help="Only records before this time.")
_order_option = click.option(
    "--order", type=click.Choice(["desc", "asc"]), default="desc", show_default=True, help="Newest or oldest first."
)


def _limit_option(default: int) -> Callable[[Any], Any]:
    return click.option(
        "--limit", "-n", type=click.IntRange(1, 100_000), default=default, show_default=True, help="Most results."
    )


# ---------------------------------------------------------------- output helpers


def to_jsonable(value: Any) -> Any:
    """Dataclasses through ``dataclasses.asdict``, containers element-wise."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, default=str))


def _emit_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows as CSV on stdout, after a header row of ``columns`` (``tael._clitables.csv_text``)."""
    from ._clitables import csv_text

    click.echo(csv_text(columns, rows), nl=False)


def _emit_records_csv(cls: type, records: Sequence[Any]) -> None:
    """Dataclass records (spans, log records, metric points...) as CSV, one column per field."""
    names = [f.name for f in dataclasses.fields(cls)]
    _emit_csv(names, ([getattr(r, n) for n in names] for r in records))


def _console() -> Console:
    from rich.console import Console

    # Piped output keeps whole ids and timestamps on one line instead of 80 columns,
    # unless COLUMNS sets the width (as on a terminal).
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").strip().isdigit()
    return Console(width=160 if piped else None, highlight=False)


def _table(title: str | None, *columns: str, right: Sequence[str] = ()) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for c in columns:
        table.add_column(c, justify="right" if c in right else "left", overflow="fold")
    return table


def _t(value: Any, style: str = "") -> Text:
    """A table cell: data is never read as rich markup."""
    from rich.text import Text

    return Text("-" if value is None else str(value), style=style)


def fmt_ns(ns: int | None) -> str:
    """A UTC timestamp with milliseconds, from int nanoseconds."""
    if ns is None:
        return "-"
    try:
        dt = _EPOCH + timedelta(microseconds=ns // 1_000)
    except OverflowError:
        return str(ns)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _status_style(status: str) -> str:
    return "bold red" if status == "error" else ("green" if status == "ok" else "")


def _severity_style(n: int) -> str:
    return "bold red" if n >= 17 else ("yellow" if n >= 13 else ("dim" if 0 < n < 9 else ""))


def _short(text: str, width: int = 100) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


@contextmanager
def _progress(output: str, description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
    """A transient rich progress bar on an interactive terminal in table mode (a pulsing
    bar when ``total`` is None); otherwise nothing. Yields ``update(advance=0, description=None)``."""
    if output != "table" or not sys.stdout.isatty():
        yield lambda advance=0, description=None: None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns.append(TextColumn("{task.completed:,.0f}/{task.total:,.0f}"))
    with Progress(*columns, TimeElapsedColumn(), console=_console(), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(advance: float = 0, description: str | None = None) -> None:
            if description is not None:
                bar.update(task, description=description)
            if advance:
                bar.advance(task, advance)

        yield update


# ---------------------------------------------------------------- opening stores


def _is_store(data: str | Path) -> bool:
    return (Path(data) / "hot" / "data.mdb").exists()


def _settings(**overrides: Any) -> Any:
    """The Settings of ``--config`` (defaults without it), with ``overrides``."""
    from ._settings import Settings

    ctx = click.get_current_context(silent=True)
    config = ctx.find_root().obj.get("config") if ctx is not None and ctx.find_root().obj else None
    if config is None:
        return Settings(**overrides)
    return Settings.from_file(config, **overrides)


def _reader(data: str) -> Store:
    """The store opened read-only: works beside a running writer (``tael serve``)."""
    from ._store import Store

    return Store(data, _settings(), read_only=True)


def _writer(data: str) -> Store:
    """The store opened for writing; refuses to create one where there is none."""
    from ._errors import StorageError
    from ._store import Store

    if not _is_store(data):
        raise StorageError(f"{data} is not a tael data directory (no hot/data.mdb)")
    return Store(data, _settings())


def _server_call(
    url: str, path: str, body: dict[str, Any], token_file: str | None, ca_file: str | None, what: str
) -> Any:
    """POST ``body`` as JSON to a running ``tael serve`` at ``url`` (a token with the admin
    scope from ``token_file`` or $TAEL_TOKEN; ``ca_file`` verifies https); its JSON answer."""
    import os
    import ssl

    import httpx

    from ._auth import read_token_file

    headers = {}
    token = read_token_file(token_file, "--token-file") if token_file else os.environ.get("TAEL_TOKEN", "").strip()
    if token:
        headers["authorization"] = f"Bearer {token}"
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        try:
            verify = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot use --ca-file {ca_file}: {exc}") from None
    try:
        # no read timeout: a compaction or retention pass may take minutes; reaching the server may not
        timeout = httpx.Timeout(None, connect=10.0)
        resp = httpx.post(f"{url.rstrip('/')}{path}", json=body, headers=headers, verify=verify, timeout=timeout)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None
    if resp.status_code == 200:
        return resp.json()
    try:
        said = resp.json().get("error") or resp.text
    except ValueError:
        said = resp.text
    if resp.status_code in (401, 403):
        raise CliError(
            f"{url} refused to {what}: {said} (give a token with the admin scope: --token-file FILE or $TAEL_TOKEN)"
        )
    raise CliError(f"{url} refused to {what}: {said}")


def _holder(data: str) -> tuple[str, dict[str, Any] | None] | None:
    """Who holds ``data`` open for writing: None when nobody does (or it is no store),
    else (its pid, what its serve.json says when it is a ``tael serve``, else None)."""
    from ._errors import StoreLockedError
    from ._fsutil import DirLock
    from ._serveradmin import running_server

    if not _is_store(data) or not (Path(data) / "LOCK").exists():
        return None  # opening it says what is wrong, or nobody ever held it
    lock = DirLock(Path(data))
    try:
        lock.acquire()
    except StoreLockedError as exc:
        return exc.pid, running_server(Path(data), exc.pid)
    lock.release()
    return None


def _server_of(data: str, url: str | None) -> str | None:
    """The URL to send a maintenance call to instead of opening ``data``: ``url`` when
    given, else that of the ``tael serve`` holding ``data`` open (its serve.json), else None
    (open the directory). A directory held by another process that is not a server is an
    error naming its pid."""
    if url is not None:
        return url
    held = _holder(data)
    if held is None:
        return None
    pid, served = held
    if served is None:
        raise CliError(
            f"{data} is open for writing by another process (pid {pid or 'unknown'}) that is not a "
            "tael serve: stop it first, or give --url of a server holding it"
        )
    return str(served["url"])


def _closed_for(data: str, command: str, why: str) -> None:
    """Refuse ``command`` on a directory a ``tael serve`` holds open, saying ``why`` it needs
    the store closed and how to go on (other holders: the command's own open says so)."""
    held = _holder(data)
    if held is None:
        return
    pid, served = held
    if served is not None:
        raise CliError(
            f"{data} is served by tael serve at {served['url']} (pid {pid}): `tael {command}` {why}; "
            f"stop the server (SIGTERM), run it, then start the server again"
        )


_server_options = [
    click.option(
        "--url",
        help="Ask the tael serve at URL to do it (default: the one holding --data open, if any).",
    ),
    click.option(
        "--token-file",
        type=click.Path(dir_okay=False),
        help="With a server: file holding a bearer token with the admin scope (or set TAEL_TOKEN).",
    ),
    click.option("--ca-file", type=click.Path(dir_okay=False), help="With an https:// server: PEM CA certificates."),
]


def _server_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_server_options):
        fn = option(fn)
    return fn


# ---------------------------------------------------------------- empty results

_WHAT = {
    "spans": ("span", "spans"),
    "logs": ("log record", "log records"),
    "metrics": ("metric point", "metric points"),
}


def why_empty(
    store: Store,
    signal: str,
    *,
    service: str | None = None,
    name: str | None = None,
    start: int | None = None,
    end: int | None = None,
    matching: str | None = None,
    others: bool = False,
) -> str:
    """What to print for a query of ``signal`` (with full-text query ``matching``) that
    found nothing: "no spans", and which filter excluded everything when the catalog or
    the store's statistics say so without reading records (a service with no spans, an
    operation the service does not have, a time window outside the signal's time range
    or, when no filter but the time window was given (``others`` False), a gap in it,
    a store holding none of the signal)."""
    many = _WHAT[signal][1]
    head = f"no {many}" + (f" matching {matching}" if matching is not None else "")
    held = store.stats().signals.get(signal)
    if held is None or held.count == 0 or held.oldest_ns is None or held.newest_ns is None:
        return f"{head}: the store holds no {many}"
    if signal == "spans" and service is not None:
        services = [s.name for s in store.list_services()]
        if service not in services:
            return f"{head}: no service named {service!r} (services: {_some(services)})"
        if name is not None:
            operations = store.list_operations(service)
            if name not in operations:
                return f"{head}: service {service!r} has no operation named {name!r} (operations: {_some(operations)})"
    outside = (start is not None and start > held.newest_ns) or (end is not None and end <= held.oldest_ns)
    if outside or ((start is not None or end is not None) and not others and matching is None and service is None):
        return (
            f"{head} between {fmt_ns(start) if start is not None else 'the start'} and "
            f"{fmt_ns(end) if end is not None else 'now'} (the store holds {many} from {fmt_ns(held.oldest_ns)} "
            f"to {fmt_ns(held.newest_ns)})"
        )
    return head if matching is not None else f"{head} match the filters"


def _some(names: Sequence[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most:,} more" if len(names) > most else "") if names else "none"


# ---------------------------------------------------------------- renderers


def spans_table(spans: Sequence[Span], title: str | None = None) -> Table:
    table = _table(title, "start", "trace id", "span id", "service", "name", "kind", "status", "ms", right=("ms",))
    for s in spans:
        table.add_row(
            _t(fmt_ns(s.start_ns)),
            _t(s.trace_id),
            _t(s.span_id),
            _t(s.service),
            _t(s.name),
            _t(s.kind),
            _t(s.status, _status_style(s.status)),
            _t(f"{s.duration_ms:,.2f}"),
        )
    return table


def logs_table(logs: Sequence[LogRecord], title: str | None = None) -> Table:
    table = _table(title, "time", "severity", "service", "trace id", "body")
    for r in logs:
        table.add_row(
            _t(fmt_ns(r.time_ns)),
            _t(r.severity_text or str(r.severity_number), _severity_style(r.severity_number)),
            _t(r.service),
            _t(r.trace_id),
            _t(_short(r.body)),
        )
    return table


def metrics_table(points: Sequence[MetricPoint], title: str | None = None) -> Table:
    table = _table(title, "time", "name", "service", "kind", "value", "unit", "attributes", right=("value",))
    for p in points:
        value = f"{p.value:,.4g}" if p.kind != "histogram" else f"n={p.count} sum={p.sum}"
        attrs = json.dumps(p.attributes, sort_keys=True, default=str)
        table.add_row(_t(fmt_ns(p.time_ns)), _t(p.name), _t(p.service), _t(p.kind), _t(value), _t(p.unit), _t(attrs))
    return table


def buckets_table(buckets: Sequence[MetricBucket], title: str | None = None) -> Table:
    cols = ("count", "avg", "min", "max", "last", "increase")
    table = _table(title, "window start", *cols, right=cols)
    for b in buckets:
        table.add_row(
            _t(fmt_ns(b.start_ns)),
            _t(f"{b.count:,}"),
            *(_t(f"{v:,.4g}") for v in (b.avg, b.min, b.max, b.last)),
            _t("-" if b.increase is None else f"{b.increase:,.4g}"),
        )
    return table


def tree_order(spans: Sequence[Span]) -> list[tuple[int, Span]]:
    """(depth, span) of every span of a trace, parents before their children and
    siblings by start time; a span whose parent is not in the trace is a root."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids and s.parent_span_id != s.span_id else None
        children.setdefault(parent, []).append(s)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.span_id))
    out: list[tuple[int, Span]] = []
    seen: set[str] = set()

    def walk(roots: list[Span]) -> None:
        stack = [(0, s) for s in reversed(roots)]
        while stack:
            depth, s = stack.pop()
            if s.span_id in seen:
                continue
            seen.add(s.span_id)
            out.append((depth, s))
            stack.extend((depth + 1, c) for c in reversed(children.get(s.span_id, [])))

    walk(children.get(None, []))
    # spans in a parent cycle have no root: show them as roots
    walk(sorted((s for s in spans if s.span_id not in seen), key=lambda s: (s.start_ns, s.span_id)))
    return out


def trace_table(spans: Sequence[Span], title: str | None = None, width: int = 24) -> Table:
    """The span tree, indented by parent, with a waterfall of each span in the trace."""
    table = _table(
        title, "span", "service", "kind", "status", "start +ms", "ms", "timeline", "span id", right=("start +ms", "ms")
    )
    if not spans:
        return table
    first = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - first, 1)
    for depth, s in tree_order(spans):
        lo = int((s.start_ns - first) * width / total)
        hi = max(lo + 1, int((s.end_ns - first) * width / total + 0.999))
        bar = " " * lo + "█" * (min(hi, width) - lo)
        table.add_row(
            _t(("  " * depth + ("└ " if depth else "")) + s.name),
            _t(s.service),
            _t(s.kind),
            _t(s.status + (f": {s.status_message}" if s.status_message else ""), _status_style(s.status)),
            _t(f"{(s.start_ns - first) / 1e6:,.2f}"),
            _t(f"{s.duration_ms:,.2f}"),
            _t(bar.ljust(width), "red" if s.status == "error" else "cyan"),
            _t(s.span_id),
        )
    return table


def _payload_texts(span: Span, keys: PayloadKeys) -> list[str]:
    texts = [v for k in keys.of(span.attributes) if isinstance(v := span.attributes[k], str)]
    for ev in span.events:
        texts += [v for k in keys.of_event(ev.name, ev.attributes) if isinstance(v := ev.attributes[k], str)]
    return texts


def snippet(texts: Sequence[str], query: str, width: int = 90) -> str:
    """The part of the first text holding the query's first word, on one line."""
    words = [w.lower() for w in re.findall(r"\w+", query)]
    for text in texts:
        flat = " ".join(text.split())
        at = flat.lower().find(words[0]) if words else -1
        if at >= 0:
            lo = max(0, at - width // 3)
            if lo:  # start at a word
                space = flat.find(" ", lo, at)
                lo = space + 1 if space != -1 else lo
            piece = flat[lo : lo + width]
            return ("…" if lo else "") + piece + ("…" if lo + width < len(flat) else "")
    return _short(texts[0], width) if texts else ""


def span_hits_table(
    spans: Sequence[Span], query: str, title: str | None = None, payload_attributes: Sequence[str] | None = None
) -> Table:
    """The spans a text search found, each with the part of its payload text that
    matched; ``payload_attributes`` are the rules of the store searched
    (``store.settings.payload_attributes``: a store keeps its own), the built-in ones
    when None."""
    from ._payloadkeys import PayloadKeys
    from ._settings import Settings

    keys = PayloadKeys(Settings().payload_attributes if payload_attributes is None else payload_attributes)
    table = _table(title, "start", "trace id", "service", "name", "status", "match")
    for s in spans:
        table.add_row(
            _t(fmt_ns(s.start_ns)),
            _t(s.trace_id),
            _t(s.service),
            _t(s.name),
            _t(s.status, _status_style(s.status)),
            _t(snippet(_payload_texts(s, keys), query)),
        )
    return table


def log_hits_table(logs: Sequence[LogRecord], query: str, title: str | None = None) -> Table:
    table = _table(title, "time", "severity", "service", "trace id", "match")
    for r in logs:
        table.add_row(
            _t(fmt_ns(r.time_ns)),
            _t(r.severity_text or str(r.severity_number), _severity_style(r.severity_number)),
            _t(r.service),
            _t(r.trace_id),
            _t(snippet([r.body], query)),
        )
    return table


def stats_tables(st: StoreStats) -> list[Table]:
    signals = _table("records", "signal", "total", "hot", "cold", "oldest", "newest", right=("total", "hot", "cold"))
    for name, s in st.signals.items():
        signals.add_row(
            _t(name),
            _t(f"{s.count:,}"),
            _t(f"{st.hot_records.get(name, 0):,}"),
            _t(f"{st.cold_records.get(name, 0):,}"),
            _t(fmt_ns(s.oldest_ns)),
            _t(fmt_ns(s.newest_ns)),
        )
    disk = _table("disk", "component", "bytes", right=("bytes",))
    for name, n in st.disk_bytes.items():
        disk.add_row(_t(name), _t(_bytes(n)))
    disk.add_row(_t("total", "bold"), _t(_bytes(st.total_disk_bytes), "bold"))
    other = _table("store", "what", "value", right=("value",))
    for what, value in (
        ("WAL segments", f"{st.wal_segments:,}"),
        ("applied LSN", f"{st.applied_lsn:,}"),
        ("indexed LSN", f"{st.indexed_lsn:,}"),
        ("cold files", f"{st.cold_files:,}"),
        ("payload blobs", f"{plural(st.blobs, 'blob')} ({_bytes(st.blob_raw_bytes)} of text)"),
        ("index documents", f"{st.index_documents:,}"),
    ):
        other.add_row(_t(what), _t(value))
    rep = st.replication
    if rep is not None:
        other.add_row(_t("replication"), _t(f"{rep.role}, epoch {rep.epoch}, WAL end {rep.end_lsn:,}"))
        if rep.store_id:
            other.add_row(_t("store id"), _t(rep.store_id))  # what a standby's --leader-store-id names
        if rep.leader_url:
            other.add_row(_t("leader"), _t(rep.leader_url))
        for r in rep.replicas:  # live positions: only in the process that ships (tael serve's /metrics)
            lag = "?" if r.lag_bytes is None else _bytes(r.lag_bytes)
            other.add_row(_t(f"standby {r.url}"), _t(f"{r.state}, {lag} behind"))
    return [signals, disk, other]


def summary_tables(r: SummaryReport) -> list[Table]:
    tr = r.traces
    head = _table(
        f"{fmt_ns(r.start_ns)} to {fmt_ns(r.end_ns)} ({(r.end_ns - r.start_ns) / 1e9:,.0f} s)", "what", "value"
    )
    for what, value in (
        ("spans", f"{tr.span_count:,}"),
        ("traces", f"{tr.trace_count:,}"),
        ("errors", f"{tr.error_count:,} ({tr.error_rate:.1%})"),
        ("latency", f"avg {tr.avg_ms:,.2f}  p50 {tr.p50_ms:,.2f}  p95 {tr.p95_ms:,.2f}  p99 {tr.p99_ms:,.2f}"),
        ("max latency", f"{tr.max_ms:,.2f} ms"),
        (
            "logs",
            f"{r.logs.total:,}: fatal {r.logs.fatal:,}, error {r.logs.error:,}, warn {r.logs.warn:,}, "
            f"info {r.logs.info:,}, debug {r.logs.debug:,}, trace {r.logs.trace:,}",
        ),
        ("metric points", f"{r.metrics.point_count:,} ({plural(r.metrics.unique_names, 'name')})"),
    ):
        head.add_row(_t(what), _t(value))
    services = _table(
        "top services", "service", "spans", "error rate", "p95 ms", right=("spans", "error rate", "p95 ms")
    )
    for s in r.top_services:
        services.add_row(_t(s.service), _t(f"{s.span_count:,}"), _t(f"{s.error_rate:.1%}"), _t(f"{s.p95_ms:,.2f}"))
    ops = _table("operations with most errors", "service", "operation", "errors", right=("errors",))
    for o in r.top_error_operations:
        ops.add_row(_t(o.service), _t(o.operation), _t(f"{o.error_count:,}", "red"))
    return [head, services, ops]


def _print(console: Console, *tables: Any) -> None:
    """Print tables, each title on a line of its own (a title wider than its table would wrap),
    fitted to the console's width (``fit_table``)."""
    from rich.table import Table
    from rich.text import Text

    from ._clitables import fit_table

    for t in tables:
        if isinstance(t, Table) and t.title is not None:
            console.print(Text(str(t.title), style="bold"), soft_wrap=True)
            t.title = None
        console.print(fit_table(t, console.width) if isinstance(t, Table) else t)
        console.print()


# ---------------------------------------------------------------- demo


@main.command()
@_data_option("./tael-demo")
@click.option("--spans", "n_spans", default=3000, show_default=True, type=click.IntRange(0), help="Spans to generate.")
@click.option("--logs", "n_logs", default=3000, show_default=True, type=click.IntRange(0), help="Log records.")
@click.option("--metrics", "n_metrics", default=3000, show_default=True, type=click.IntRange(0), help="Metric points.")
@click.option("--seed", type=int, default=None, help="Seed of the workload (default: the clock).")
@_output_option
def demo(data: str, n_spans: int, n_logs: int, n_metrics: int, seed: int | None, output: str) -> None:
    """Write a realistic multi-service workload into DATA, run maintenance and print what reads back.

    Three services over the last 2.5 hours, with errors, LLM prompts and
    completions (long shared ones kept once in the blob store), logs and
    metrics; one maintenance pass moves what is older than an hour to the cold
    tier, then a summary and a few queries read across both tiers.
    """
    from ._demo import STEPS, run_demo

    with _progress(output, "demo", total=len(STEPS)) as update:
        started = [False]

        def step(name: str) -> None:
            update(advance=1 if started[0] else 0, description=name)
            started[0] = True

        result = run_demo(data, n_spans=n_spans, n_logs=n_logs, n_metrics=n_metrics, seed=seed, progress=step)
    if output == "json":
        _emit_json(result)
    else:
        _render_demo(_console(), result)


def _render_demo(console: Console, r: DemoResult) -> None:
    st = r.stats
    m = r.maintenance
    console.print(f"store at {r.data}", markup=False)
    console.print(
        f"wrote {plural(r.inserted['spans'], 'span')}, {plural(r.inserted['logs'], 'log')} and "
        f"{plural(r.inserted['metrics'], 'metric point')}; {plural(r.llm_spans, 'model call')} carry "
        f"{plural(r.payload_texts, 'prompt and completion text')}",
        markup=False,
    )
    if m.compaction is not None:
        c = m.compaction
        console.print(
            f"maintenance: compacted {plural(c.total_records, 'record')} older than {fmt_ns(c.before_ns)} into "
            f"{plural(len(c.files_written), 'Parquet file')} "
            f"(with {plural(sum(c.rollup_rows.values()), 'metric rollup row')}), "
            f"checkpointed {plural(m.wal_segments_removed, 'WAL segment')}",
            markup=False,
        )
    if m.error:
        console.print(f"maintenance failed: {m.error}", style="bold red", markup=False)
    console.print(
        f"payloads: {plural(st.blobs, 'distinct long text')} kept once in the blob store "
        f"({_bytes(st.blob_raw_bytes)} of text, {_bytes(st.disk_bytes.get('blobs', 0))} on disk)",
        markup=False,
    )
    console.print()
    _print(console, stats_tables(st)[0])
    services = _table(
        "services", "service", "spans", "traces", "errors", "avg ms", right=("spans", "traces", "errors", "avg ms")
    )
    for s in r.services:
        services.add_row(
            _t(s.name),
            _t(f"{s.span_count:,}"),
            _t(f"{s.trace_count:,}"),
            _t(f"{s.error_rate:.1%}", "red" if s.error_rate > 0.05 else ""),
            _t(f"{s.avg_duration_ms:,.2f}"),
        )
    _print(console, services)
    console.print(f"summary of the last {(r.summary.end_ns - r.summary.start_ns) / 3.6e12:.1f} hours", markup=False)
    _print(console, *summary_tables(r.summary))
    if r.anomalies.anomalies:
        console.print("anomalies (last 5 minutes against the hour before):")
        for a in r.anomalies.anomalies:
            console.print(f"  {a.severity:6} {a.description}", style="red", markup=False)
        console.print()
    _print(console, span_hits_table(r.span_hits, r.span_search, f"spans whose payload matches {r.span_search}"))
    _print(console, spans_table(r.errors, "latest failing spans"))
    if r.error_trace:
        _print(
            console,
            trace_table(r.error_trace, f"trace {r.error_trace[0].trace_id} ({plural(len(r.error_trace), 'span')})"),
        )
        if r.error_logs:
            _print(console, logs_table(r.error_logs, "its logs"))
    _print(console, log_hits_table(r.log_hits, r.log_search, f"logs matching {r.log_search}"))
    name, service = r.metric
    _print(
        console,
        buckets_table(r.buckets, f"{name} of {service}, 15-minute buckets (rollups for cold data, raw points for hot)"),
    )


# ---------------------------------------------------------------- serve


@main.command()
@_data_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4318, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--grpc-port",
    default=4317,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="TAEL_GRPC_PORT",
    help="Port of the OTLP/gRPC receiver (same --host, auth and TLS as HTTP); 0 serves no gRPC. Env: TAEL_GRPC_PORT.",
)
@click.option(
    "--replica",
    "replicas",
    multiple=True,
    metavar="URL",
    help="Ship the WAL to the standby serving at URL (repeat for several); adds to Settings.replicas.",
)
@click.option(
    "--required-acks",
    metavar="all|N",
    help="Standbys that must hold a write before it is acknowledged: all (default), 0 (asynchronous) or N.",
)
@click.option(
    "--standby-of",
    metavar="URL",
    help="Serve DATA as a standby of the leader at URL: it takes the leader's WAL on /replication/wal.",
)
@click.option(
    "--leader-store-id",
    metavar="HEX",
    help="With --standby-of: take WAL only from the store with this id (the leader's `tael stats`).",
)
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False),
    help="TOML file of [[tokens]] (token, scopes) that every request but /health/* must present as a bearer token.",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Serve a non-loopback --host without --auth-file (refused otherwise).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name requests may carry besides localhost, 127.0.0.1 and [::1] (repeat for several).",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate chain: serve HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key of --tls-cert.")
@click.option(
    "--replication-token-file",
    type=click.Path(dir_okay=False),
    help="File holding the bearer token this leader presents to its --replica standbys.",
)
@click.option(
    "--replication-ca-file",
    type=click.Path(dir_okay=False),
    help="PEM CA certificates that verify https:// --replica standbys.",
)
@click.option("--access-log", is_flag=True, help="Log one line per request (method, path, status).")
def serve(
    data: str,
    host: str,
    port: int,
    grpc_port: int,
    replicas: tuple[str, ...],
    required_acks: str | None,
    standby_of: str | None,
    leader_store_id: str | None,
    auth_file: str | None,
    allow_unauthenticated: bool,
    allowed_hosts: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    replication_token_file: str | None,
    replication_ca_file: str | None,
    access_log: bool,
) -> None:
    """Serve DATA over HTTP (OTLP/HTTP ingest and the query API) and OTLP/gRPC until SIGTERM or Ctrl-C.

    With --replica, DATA is a leader shipping its WAL to those standbys; with
    --standby-of, DATA is a standby (reads only) until promoted, and ships to
    its --replica standbys only from then on.

    A --host other than a loopback address needs --auth-file (or
    --allow-unauthenticated); see "Security" in docs/server.md."""
    from ._server import run_server  # type: ignore[import-not-found, unused-ignore]

    overrides: dict[str, Any] = {}
    base = _settings()
    for name, value in (
        ("standby_leader_store_id", leader_store_id),
        ("auth_file", auth_file),
        ("tls_cert_file", tls_cert),
        ("tls_key_file", tls_key),
        ("replication_token_file", replication_token_file),
        ("replication_ca_file", replication_ca_file),
    ):
        if value is not None:
            overrides[name] = value
    if allow_unauthenticated:
        overrides["allow_unauthenticated"] = True
    if allowed_hosts:
        overrides["allowed_hosts"] = tuple(dict.fromkeys(base.allowed_hosts + allowed_hosts))
    if leader_store_id is not None and standby_of is None:
        raise CliError("--leader-store-id is for a standby: give --standby-of too")
    if replicas:
        overrides["replicas"] = tuple(dict.fromkeys(base.replicas + replicas))
    if required_acks is not None:
        if required_acks == "all":
            overrides["required_acks"] = None
        elif required_acks.isdigit():
            overrides["required_acks"] = int(required_acks)
        else:
            raise CliError(f"--required-acks must be 'all' or a number, got {required_acks!r}")
    for name in ("tael._server", "tael._serveradmin"):  # start, activity and shutdown lines, even without -v
        logging.getLogger(name).setLevel(min(logging.INFO, logging.getLogger(name).getEffectiveLevel()))
    run_server(
        data,
        host=host,
        port=port,
        grpc_port=grpc_port,
        settings=_settings(**overrides),
        standby_of=standby_of,
        access_log=access_log,
    )


@main.command()
@_data_and_argument(default=None)
@click.option("--url", help="Promote the running standby at URL (tael serve --standby-of) instead of DATA on disk.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="With --url: file holding a bearer token with the admin scope (or set TAEL_TOKEN).",
)
@click.option("--ca-file", type=click.Path(dir_okay=False), help="With an https:// --url: PEM CA certificates.")
@_output_option
def promote(
    data_arg: str | None,
    data_option: str | None,
    url: str | None,
    token_file: str | None,
    ca_file: str | None,
    output: str,
) -> None:
    """Make the standby in --data (or DATA) a writable leader (it must not be open; see --url).

    Its old leader is fenced off: a standby of a newer epoch refuses its shipments.
    A standby serving with --auth-file wants a token with the admin scope:
    --token-file FILE, or the token itself in the environment variable TAEL_TOKEN."""
    data = _one_data(data_arg, data_option, default=None)
    if (data is None) == (url is None):
        raise CliError(
            "give either the standby's data directory (--data DIR or DATA) or the --url of a running standby"
        )
    if url is not None:
        answer = _server_call(url, "/replication/promote", {}, token_file, ca_file, "promote")
        if output == "json":
            _emit_json({"promoted": url, "role": answer["role"], "epoch": answer["epoch"]})
        else:
            click.echo(f"promoted {url}: it is a leader now (epoch {answer['epoch']})")
        return
    from ._errors import StoreLockedError
    from ._store import Store

    assert data is not None
    if not _is_store(data):
        raise CliError(f"{data} is not a tael data directory (no hot/data.mdb)")
    settings = _settings(replicas=(), standby_listen=None)
    try:
        with Store(data, settings, read_only=True) as current:
            if not current.standby:
                raise CliError(f"{data} is not a standby (it is a leader already)")
        store = Store(data, settings, standby=True)
    except StoreLockedError as exc:
        raise CliError(f"{exc}; stop it first, or promote the running standby with --url") from exc
    with store:
        store.promote()
        epoch = store.replication_status().epoch
    if output == "json":
        _emit_json({"promoted": data, "role": "leader", "epoch": epoch})
    else:
        click.echo(f"promoted {data}: it is a leader now (epoch {epoch})")


# ---------------------------------------------------------------- query


@main.group(cls=click.Group)
def query() -> None:
    """Query spans, logs or metric points with the API's filters (read-only)."""


@query.command("traces")
@_data_option()
@click.option("--service", help="Only spans of this service.")
@click.option("--name", help="Only spans with this name (operation).")
@click.option("--status", type=click.Choice(SPAN_STATUSES), help="Only spans with this status.")
@click.option("--kind", type=click.Choice(SPAN_KINDS), help="Only spans of this kind.")
@click.option("--min-duration-ms", type=float, help="Only spans lasting at least this long.")
@click.option("--max-duration-ms", type=float, help="Only spans lasting at most this long.")
@_attr_option
@_start_option
@_end_option
@_limit_option(20)
@click.option("--text", help='Full-text search of span payloads: every word and "quoted phrase" must match.')
@_order_option
@_rows_output_option
def query_traces(
    data: str,
    service: str | None,
    name: str | None,
    status: str | None,
    kind: str | None,
    min_duration_ms: float | None,
    max_duration_ms: float | None,
    attrs: tuple[str, ...],
    start: int | None,
    end: int | None,
    limit: int,
    text: str | None,
    order: str,
    output: str,
) -> None:
    """Spans matching every filter (Store.query_traces), newest start first."""
    from ._query.filters import SpanFilter

    attributes = _attrs(attrs)
    with _reader(data) as store:
        where = SpanFilter(
            service=service,
            name=name,
            status=status,
            kind=kind,
            min_duration_ms=min_duration_ms,
            max_duration_ms=max_duration_ms,
            attributes=attributes,
            start=start,
            end=end,
            text=text,
        )
        spans = store.query_traces(where, limit=limit, order=order)
        if not spans and output == "table":
            others = any(
                v is not None for v in (name, status, kind, min_duration_ms, max_duration_ms, attributes, text)
            )
            click.echo(why_empty(store, "spans", service=service, name=name, start=start, end=end, others=others))
            return
    if output == "json":
        _emit_json(spans)
    elif output == "csv":
        from ._models import Span

        _emit_records_csv(Span, spans)
    else:
        _print(_console(), spans_table(spans, plural(len(spans), "span")))


@query.command("logs")
@_data_option()
@click.option("--service", help="Only records of this service.")
@click.option("--min-severity", type=SEVERITY, help="Lowest severity: 0..24 or trace|debug|info|warn|error|fatal.")
@click.option("--trace-id", help="Only records of this trace (32 hex characters).")
@_attr_option
@_start_option
@_end_option
@_limit_option(20)
@click.option("--text", help='Full-text search of log bodies: every word and "quoted phrase" must match.')
@_order_option
@_rows_output_option
def query_logs(
    data: str,
    service: str | None,
    min_severity: int | None,
    trace_id: str | None,
    attrs: tuple[str, ...],
    start: int | None,
    end: int | None,
    limit: int,
    text: str | None,
    order: str,
    output: str,
) -> None:
    """Log records matching every filter (Store.query_logs), newest first."""
    from ._query.filters import LogFilter

    attributes = _attrs(attrs)
    with _reader(data) as store:
        where = LogFilter(
            service=service,
            min_severity=min_severity,
            trace_id=trace_id,
            attributes=attributes,
            start=start,
            end=end,
            text=text,
        )
        logs = store.query_logs(where, limit=limit, order=order)
        if not logs and output == "table":
            others = any(v is not None for v in (min_severity, trace_id, attributes, text))
            click.echo(why_empty(store, "logs", service=service, start=start, end=end, others=others))
            return
    if output == "json":
        _emit_json(logs)
    elif output == "csv":
        from ._models import LogRecord

        _emit_records_csv(LogRecord, logs)
    else:
        _print(_console(), logs_table(logs, plural(len(logs), "log record")))


@query.command("metrics")
@_data_option()
@click.option("--name", help="Only points of this metric.")
@click.option("--service", help="Only points of this service.")
@_attr_option
@_start_option
@_end_option
@_limit_option(100)
@click.option(
    "--step",
    type=click.Choice(["1m", "5m", "1h", "1d"]),
    default=None,
    help="Aggregate into buckets of this width instead (Store.aggregate_metrics; needs --name, --start, --end).",
)
@_rows_output_option
def query_metrics(
    data: str,
    name: str | None,
    service: str | None,
    attrs: tuple[str, ...],
    start: int | None,
    end: int | None,
    limit: int,
    step: str | None,
    output: str,
) -> None:
    """Metric points matching every filter (Store.query_metrics), oldest first."""
    attributes = _attrs(attrs)
    if step is not None and (name is None or start is None or end is None):
        raise click.UsageError("--step needs --name, --start and --end")
    with _reader(data) as store:
        if step is not None:
            assert name is not None
            buckets = store.aggregate_metrics(
                name, service=service, attributes=attributes, start=start, end=end, step=step
            )
        else:
            from ._query.filters import MetricFilter

            where = MetricFilter(name=name, service=service, attributes=attributes, start=start, end=end)
            points = store.query_metrics(where, limit=limit)
            if not points and output == "table":
                others = any(v is not None for v in (name, service, attributes))
                click.echo(why_empty(store, "metrics", start=start, end=end, others=others))
                return
    if step is not None:
        if output == "json":
            _emit_json(buckets)
        elif output == "csv":
            from ._models import MetricBucket

            _emit_records_csv(MetricBucket, buckets)
        else:
            _print(_console(), buckets_table(buckets, f"{name}: {plural(len(buckets), 'bucket')} of {step}"))
    elif output == "json":
        _emit_json(points)
    elif output == "csv":
        from ._models import MetricPoint

        _emit_records_csv(MetricPoint, points)
    else:
        _print(_console(), metrics_table(points, plural(len(points), "metric point")))


# ---------------------------------------------------------------- trace, search


@main.command()
@click.argument("trace_id")
@_data_option()
@click.option("--logs/--no-logs", "with_logs", default=True, show_default=True, help="Also list the trace's logs.")
@_rows_output_option
def trace(trace_id: str, data: str, with_logs: bool, output: str) -> None:
    """Show trace TRACE_ID as a span tree, indented by parent, children by start time.

    With --output csv: the trace's spans, one row each (no logs)."""
    with _reader(data) as store:
        spans = store.get_trace(trace_id)
        logs = store.query_logs(trace_id=trace_id, order="asc", limit=1000) if with_logs and spans else []
    if not spans:
        raise CliError(f"trace {trace_id} not found in {data}")
    if output == "json":
        _emit_json({"trace_id": trace_id, "spans": spans, "logs": logs})
        return
    if output == "csv":
        from ._models import Span

        _emit_records_csv(Span, spans)
        return
    first = min(s.start_ns for s in spans)
    total_ms = (max(s.end_ns for s in spans) - first) / 1e6
    errors = sum(s.status == "error" for s in spans)
    title = (
        f"trace {trace_id}: {plural(len(spans), 'span')}, {plural(len({s.service for s in spans}), 'service')}, "
        f"{total_ms:,.2f} ms from {fmt_ns(first)}, errors: {errors}"
    )
    console = _console()
    console.print(title, markup=False, soft_wrap=True)
    _print(console, trace_table(spans))
    if logs:
        _print(console, logs_table(logs, plural(len(logs), "log record")))


@main.command()
@click.argument("text")
@_data_option()
@click.option("--signal", type=click.Choice(["spans", "logs"]), default="spans", show_default=True)
@click.option("--service", help="Only records of this service.")
@_limit_option(20)
@_rows_output_option
def search(text: str, data: str, signal: str, service: str | None, limit: int, output: str) -> None:
    """Full-text search: spans by payload (prompts, completions, exception messages) or logs by body.

    Every word and every "quoted phrase" of TEXT must match, case-insensitively.
    """
    from ._query.filters import LogFilter, SpanFilter

    with _reader(data) as store:
        if signal == "spans":
            spans = store.query_traces(SpanFilter(text=text, service=service), limit=limit)
            if not spans and output == "table":
                click.echo(why_empty(store, "spans", service=service, matching=text))
            elif output == "json":
                _emit_json(spans)
            elif output == "csv":
                from ._models import Span

                _emit_records_csv(Span, spans)
            else:
                title = f"{plural(len(spans), 'span')} matching {text}"
                _print(_console(), span_hits_table(spans, text, title, store.settings.payload_attributes))
        else:
            logs = store.query_logs(LogFilter(text=text, service=service), limit=limit)
            if not logs and output == "table":
                click.echo(why_empty(store, "logs", service=service, matching=text))
            elif output == "json":
                _emit_json(logs)
            elif output == "csv":
                from ._models import LogRecord

                _emit_records_csv(LogRecord, logs)
            else:
                _print(_console(), log_hits_table(logs, text, f"{plural(len(logs), 'log record')} matching {text}"))


# ---------------------------------------------------------------- summary, stats


@main.command()
@_data_option()
@click.option("--last-s", default=3600.0, show_default=True, type=float, help="Window length in seconds.")
@click.option("--service", help="Only this service.")
@click.option("--now", type=TIME, default=None, help="End of the window (default: now).")
@_output_option
def summary(data: str, last_s: float, service: str | None, now: int | None, output: str) -> None:
    """The last LAST_S seconds at a glance: latency percentiles, busiest services, errors, logs, metrics."""
    with _reader(data) as store:
        report = store.summary(last_s=last_s, service=service, now=now)
    if output == "json":
        _emit_json(report)
    else:
        _print(_console(), *summary_tables(report))


@main.command()
@_data_option()
@_rows_output_option
def stats(data: str, output: str) -> None:
    """Record counts per signal and tier, time ranges and bytes on disk.

    With --output csv: one row per signal (count, hot, cold, oldest_ns, newest_ns)."""
    with _reader(data) as store:
        st = store.stats()
    if output == "json":
        _emit_json(st)
    elif output == "csv":
        _emit_csv(
            ("signal", "count", "hot", "cold", "oldest_ns", "newest_ns"),
            (
                (name, s.count, st.hot_records.get(name, 0), st.cold_records.get(name, 0), s.oldest_ns, s.newest_ns)
                for name, s in st.signals.items()
            ),
        )
    else:
        _print(_console(), *stats_tables(st))


@main.command()
@click.argument("query_text", metavar="QUERY")
@_data_option()
@_rows_output_option
def sql(query_text: str, data: str, output: str) -> None:
    """Run a DuckDB SQL QUERY over the views spans, logs, metrics, metrics_5m and
    metrics_1h, which union the hot and cold tiers (columns: docs/format/cold.md)."""
    from ._query.sql import json_rows

    with _reader(data) as store:
        result = store.sql(query_text)
    rows = json_rows(result)  # not to_pylist: that cannot convert nanosecond timestamps without pandas
    if output == "json":
        _emit_json(rows)
        return
    if output == "csv":
        _emit_csv(result.column_names, (list(row.values()) for row in rows))
        return
    table = _table(plural(len(rows), "row"), *result.column_names)
    for row in rows:
        table.add_row(*[_t(_sql_cell(v)) for v in row.values()])
    _print(_console(), table)


def _sql_cell(value: Any) -> str | None:
    """A SQL result value in a table: strings as they are, maps, structs and lists as JSON."""
    if value is None or isinstance(value, str):
        return None if value is None else _short(value)
    return _short(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


# ---------------------------------------------------------------- maintenance commands


@main.command()
@_data_option()
@click.option(
    "--before", type=TIME, default=None, help="Move records older than this (default: now - Settings.hot_window_s)."
)
@_server_option
@_output_option
def compact(
    data: str, before: int | None, url: str | None, token_file: str | None, ca_file: str | None, output: str
) -> None:
    """Move hot records older than BEFORE to the cold tier (Parquet, with metric rollups).

    Beside a running tael serve (or with --url) the server does it (admin scope)."""
    from ._models import CompactionReport

    server = _server_of(data, url)
    if server is not None:
        with _progress(output, f"compacting through {server}"):
            answer = _server_call(server, "/admin/compact", {"before": before}, token_file, ca_file, "compact")
        report = CompactionReport(**answer)
    else:
        with _writer(data) as store:
            if before is None:
                before = time.time_ns() - int(store.settings.hot_window_s * 1e9)
            with _progress(output, f"compacting records before {fmt_ns(before)}"):
                report = store.compact(before)
    if output == "json":
        _emit_json(report)
        return
    table = _table(f"compacted records before {fmt_ns(report.before_ns)}", "dataset", "rows", right=("rows",))
    for name, n in {**report.records, **report.rollup_rows}.items():
        table.add_row(_t(name), _t(f"{n:,}"))
    console = _console()
    _print(console, table)
    console.print(
        f"{plural(len(report.files_written), 'file')} written, {plural(report.files_merged, 'small file')} merged away"
    )


@main.command()
@_data_option()
@click.option("--now", type=TIME, default=None, help="The time retention is measured from (default: now).")
@click.option("--dry-run", is_flag=True, help="Drop nothing: list what would go.")
@_server_option
@_output_option
def retention(
    data: str,
    now: int | None,
    dry_run: bool,
    url: str | None,
    token_file: str | None,
    ca_file: str | None,
    output: str,
) -> None:
    """Drop what is past each dataset's retention, then delete unreferenced payload blobs.

    Beside a running tael serve (or with --url) the server does it (admin scope);
    --dry-run reads the store (read-only beside a server) and changes nothing."""
    from ._models import RetentionReport

    server = None if dry_run and url is None else _server_of(data, url)
    if server is not None:
        with _progress(output, f"enforcing retention through {server}"):
            body = {"now": now, "dry_run": dry_run}
            answer = _server_call(server, "/admin/retention", body, token_file, ca_file, "enforce retention")
        report, blobs = RetentionReport(**answer["retention"]), int(answer["blobs_removed"])
    elif dry_run:
        with _reader(data) as reader:
            report, blobs = reader.enforce_retention(now, dry_run=True), 0
    else:
        with _writer(data) as store, _progress(output, "enforcing retention"):
            report = store.enforce_retention(now)
            blobs = store.collect_blobs()
    if output == "json":
        _emit_json({"retention": report, "blobs_removed": blobs})
        return
    console = _console()
    verb = "would drop" if report.dry_run else "dropped"
    title = f"retention at {fmt_ns(report.now_ns)}" + (" (dry run: nothing dropped)" if report.dry_run else "")
    table = _table(title, "what", verb, right=(verb,))
    table.add_row(_t("cold partitions"), _t(f"{len(report.partitions_dropped):,}"))
    table.add_row(_t("cold files"), _t(f"{report.cold_files_dropped:,}"))
    table.add_row(_t("cold rows"), _t(f"{report.cold_rows_dropped:,}"))
    for signal, n in report.hot_records_dropped.items():
        table.add_row(_t(f"hot {signal}"), _t(f"{n:,}"))
    if not report.dry_run:
        table.add_row(_t("payload blobs"), _t(f"{blobs:,}"))
    _print(console, table)
    for p in report.partitions_dropped:
        console.print(f"  {verb} {p}", markup=False)


@main.group("settings", cls=click.Group)
def settings_group() -> None:
    """The settings kept with the data (payload keys, retention, hot window, cold files)."""


@settings_group.command("show")
@_data_option()
@_output_option
def settings_show(data: str, output: str) -> None:
    """The settings DATA keeps, used by every command and process that opens it."""
    from . import _datasettings
    from ._errors import StorageError

    if not _is_store(data):
        raise StorageError(f"{data} is not a tael data directory (no hot/data.mdb)")
    stored = _datasettings.read_stored(Path(data))
    defaults = _settings()
    values = {name: (stored or {}).get(name, getattr(defaults, name)) for name in _datasettings.STORED}
    if output == "json":
        _emit_json({"stored": stored is not None, "settings": values})
        return
    title = "settings kept with the data" if stored is not None else "no settings stored yet (an open writes them)"
    table = _table(title, "setting", "value", "changes with")
    for name, value in values.items():
        shown = ", ".join(value) if isinstance(value, tuple) else str(value)
        how = _datasettings.APPLIED_BY.get(name, "tael settings set")
        table.add_row(_t(name), _t(shown), _t(how))
    _print(_console(), table)


@settings_group.command("set")
@_data_option()
@click.argument("assignments", nargs=-1, required=True, metavar="NAME=VALUE...")
@_output_option
def settings_set(data: str, assignments: tuple[str, ...], output: str) -> None:
    """Change settings kept with DATA (the store must not be open elsewhere).

    VALUE is JSON (3, 0.5, ["a", "b"]) or else text. Payload keys change with
    `tael rebuild-index --payload-attribute KEY`, which re-indexes what is stored."""
    from . import _datasettings
    from ._errors import StorageError
    from ._fsutil import DirLock

    if not _is_store(data):
        raise StorageError(f"{data} is not a tael data directory (no hot/data.mdb)")
    changes: dict[str, Any] = {}
    for text in assignments:
        name, sep, raw = text.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="NAME=VALUE")
        try:
            changes[name] = json.loads(raw)
        except ValueError:
            changes[name] = raw
    _closed_for(data, "settings set", "changes what every process opening the store runs with")
    lock = DirLock(Path(data))
    lock.acquire()
    try:
        values = _datasettings.change_stored(Path(data), **changes)
    finally:
        lock.release()
    if output == "json":
        _emit_json({"settings": values})
        return
    for name in changes:
        click.echo(f"{name} = {values[name]!r}")


@main.command("rebuild-index")
@_data_option()
@click.option(
    "--payload-attribute",
    "payload_attributes",
    multiple=True,
    help="Index these payload keys from now on (repeat; patterns allowed): stored with the data, then applied "
    "to every record. Default: the keys stored with the data (or those of --config).",
)
@click.option(
    "--default-payload-attributes", is_flag=True, help="Go back to tael's built-in payload keys, stored and applied."
)
@_server_option
@_output_option
def rebuild_index(
    data: str,
    payload_attributes: tuple[str, ...],
    default_payload_attributes: bool,
    url: str | None,
    token_file: str | None,
    ca_file: str | None,
    output: str,
) -> None:
    """Rebuild the full-text index from the hot and cold tiers.

    Beside a running tael serve (or with --url) the server rebuilds it while it keeps
    taking writes (admin scope). This is also how the payload keys kept with the data
    change (tael settings show lists them): that needs the store closed."""
    from . import rebuild_index as rebuild
    from ._errors import StorageError
    from ._settings import Settings

    if not _is_store(data):
        raise StorageError(f"{data} is not a tael data directory (no hot/data.mdb)")
    if payload_attributes and default_payload_attributes:
        raise click.UsageError("--payload-attribute and --default-payload-attributes exclude each other")
    if payload_attributes or default_payload_attributes:  # what every writer uses: not while one runs
        _closed_for(data, "rebuild-index --payload-attribute", "changes the payload keys every writer uses")
    else:
        server = _server_of(data, url)
        if server is not None:
            with _progress(output, f"rebuilding the full-text index through {server}"):
                answer = _server_call(server, "/admin/rebuild-index", {}, token_file, ca_file, "rebuild the index")
            if output == "json":
                _emit_json(answer)
            else:
                click.echo(f"indexed {plural(answer['documents'], 'document')} in {answer['seconds']:.2f} s ({server})")
            return
    keys = Settings().payload_attributes if default_payload_attributes else payload_attributes or None
    t0 = time.perf_counter()
    with _progress(output, "rebuilding the full-text index"):
        documents = rebuild(data, _settings(), payload_attributes=keys)
    elapsed = time.perf_counter() - t0
    if output == "json":
        _emit_json({"documents": documents, "seconds": round(elapsed, 3)})
    else:
        click.echo(f"indexed {plural(documents, 'document')} in {elapsed:.2f} s")


@main.command()
@_data_and_argument()
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="json",
    show_default=True,
    help="The repair report as JSON, or a table.",
)
def repair(data_arg: str | None, data_option: str | None, output: str) -> None:
    """Move damaged or unappliable parts of the write-ahead log of --data (or DATA) aside so the store opens again.

    Exits 1 when there was damage (its records are lost; the report says where).
    `tael check --repair` checks the cold tier too.
    """
    from . import repair as do_repair

    data = _one_data(data_arg, data_option)
    assert data is not None
    _closed_for(data, "repair", "mends a WAL that stops the store opening, which a running server's did not")
    report = do_repair(data)
    if output == "json":
        _emit_json(report)
    else:
        console = _console()
        console.print(
            f"{plural(report.segments_checked, 'WAL segment')} checked, {plural(report.frames_ok, 'frame')} verify"
        )
        if report.damaged:
            table = _table(
                "damaged regions moved aside", "segment", "offset", "bytes", "copy", "why", right=("offset", "bytes")
            )
            for d in report.damaged:
                table.add_row(
                    _t(d.segment), _t(f"{d.offset:,}"), _t(f"{d.length:,}"), _t(d.quarantined_to), _t(d.reason)
                )
            _print(console, table)
    if report.damaged:
        sys.exit(1)


# ---------------------------------------------------------------- check


def check_store(data: str | Path) -> dict[str, Any]:
    """Verify a store without changing it: every WAL frame's checksum, the hot tier
    (opened read-only), every cold file of the manifest (present, Parquet footer
    readable, row count as recorded), the payload blob files the catalog names and
    the full-text index's coverage of the hot tier: the WAL through
    ``tael._check.check_wal``, the rest through ``Store.check()``.
    Returns a JSON-able report; ``ok`` is False when anything is damaged."""
    from ._check import check_wal, one_line, problem
    from ._errors import StorageError, TaelError
    from ._store import Store

    root = Path(data)
    if not _is_store(root) and not (root / "wal").is_dir():
        raise StorageError(f"{root} is not a tael data directory (no hot/data.mdb, no wal/)")
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    report: dict[str, Any] = {"data": str(root.resolve())}
    store: Store | None = None
    if _is_store(root):
        try:
            store = Store(root, _settings(), read_only=True)
        except TaelError as exc:
            problems.append(problem("hot", f"the hot tier does not open: {one_line(exc)}", root / "hot"))
    else:
        problems.append(
            problem("hot", "the hot tier is missing (the next open rebuilds it from the WAL)", root / "hot")
        )
    hot: dict[str, Any] | None = None
    cold: dict[str, Any] = {"files": 0, "rows": 0, "bytes": 0}
    blobs: dict[str, int] = {"catalog": 0, "missing": 0}
    if store is not None:
        with store:
            tiers = store.check()
        hot, cold, blobs = tiers["hot"], tiers["cold"], tiers["blobs"]
        problems += tiers["problems"]
        notes += tiers["notes"]
        if tiers["index"] is not None:
            report["index"] = tiers["index"]  # right after "data" in the JSON report, as it always was
    wal, wal_problems, wal_notes = check_wal(root / "wal", None if hot is None else hot["applied_lsn"])
    report.update(
        ok=not (wal_problems or problems),
        wal=wal,
        hot=hot,
        cold=cold,
        blobs=blobs,
        index=report.get("index"),
        problems=wal_problems + problems,
        notes=wal_notes + notes,
    )
    return report


def _render_check(console: Console, r: dict[str, Any]) -> None:
    from rich.text import Text

    root = Path(r["data"])

    def rel(path: str | None) -> str:
        if path is None:
            return "-"
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    parts = {p["part"] for p in r["problems"]}
    console.print(f"check of {r['data']}", markup=False, soft_wrap=True)
    table = _table(None, "part", "state", "what was verified")
    w = r["wal"]
    table.add_row(
        _t("wal"), _state("wal" in parts), _t(f"{plural(w['segments'], 'segment')}, {plural(w['frames'], 'frame')}")
    )
    hot = r["hot"]
    hot_text = (
        "does not open"
        if hot is None
        else f"{plural(sum(hot['records'].values()), 'record')}, applied to LSN {hot['applied_lsn']:,}"
    )
    table.add_row(_t("hot"), _state("hot" in parts), _t(hot_text))
    c = r["cold"]
    table.add_row(
        _t("cold"),
        _state("cold" in parts),
        _t(f"{plural(c['files'], 'file')}, {plural(c['rows'], 'row')}, {_bytes(c['bytes'])}"),
    )
    b = r["blobs"]
    table.add_row(_t("blobs"), _state("blobs" in parts), _t(f"{plural(b['catalog'], 'blob')} in the catalog"))
    ix = r.get("index")
    if ix is not None or "index" in parts:
        ix_text = (
            "not read"
            if ix is None
            else "not built (the next open builds it)"
            if not ix["built"]
            else f"{plural(sum(ix['checked'].values()), 'hot record')} with text checked, "
            f"indexed to LSN {ix['indexed_lsn']:,}"
        )
        table.add_row(_t("index"), _state("index" in parts), _t(ix_text))
    _print(console, table)
    if r.get("repair") is not None:
        rep = r["repair"]
        for p in r.get("problems_before_repair", []):
            if p["part"] == "wal":
                console.print(f"repaired: {rel(p['path'])}: {p['message']}", markup=False, soft_wrap=True)
        console.print(
            f"repair: {plural(len(rep['damaged']), 'damaged WAL region')} moved to {rep['quarantine_dir']} "
            "(their records are lost)",
            markup=False,
            soft_wrap=True,
        )
    for p in r["problems"]:
        console.print(
            Text.assemble((f"{p['part']}: ", "bold red"), f"{rel(p['path'])}: {p['message']}"), soft_wrap=True
        )
    for note in r["notes"]:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    if r["ok"]:
        console.print(Text("OK: no damage found", style="bold green"))
    else:
        hint = "; `tael check --repair` moves WAL damage aside" if "wal" in parts and r.get("repair") is None else ""
        hint += "; `tael rebuild-index` rebuilds the full-text index" if "index" in parts else ""
        console.print(Text(f"DAMAGED: {plural(len(r['problems']), 'problem')}{hint}", style="bold red"))


def _state(bad: bool) -> Text:
    return _t("DAMAGED", "bold red") if bad else _t("ok", "green")


@main.command()
@_data_option()
@click.option(
    "--repair",
    "do_repair",
    is_flag=True,
    help="Move WAL damage aside (tael.repair; needs the store closed elsewhere), then check again.",
)
@_output_option
def check(data: str, do_repair: bool, output: str) -> None:
    """Verify the WAL, hot and cold tiers and the full-text index without changing anything; exit 1 on damage.

    Every WAL frame's checksum (and that each frame the next open replays can
    be applied), the hot tier (opened read-only), every cold file of the
    manifest (present, Parquet footer readable, row count as recorded), the
    payload blob files, and that the full-text index holds a document for every
    hot-tier span and log with text that the next open would not index again
    from the WAL (those before the recorded indexed LSN, or all of them when the
    WAL no longer reaches back to it). Missing documents are damage (text
    search misses those records): run `tael rebuild-index`. An index behind the
    hot tier whose records the WAL still holds is a note: the next open for
    writing indexes them.
    """
    with _progress(output, "checking"):
        report = check_store(data)
        if do_repair and any(p["part"] == "wal" for p in report["problems"]):
            from . import repair as repair_wal

            before = report["problems"]
            fixed = repair_wal(data)
            report = check_store(data)
            report["repair"] = to_jsonable(fixed)
            report["problems_before_repair"] = before
    if output == "json":
        _emit_json(report)
    else:
        _render_check(_console(), report)
    if not report["ok"]:
        sys.exit(1)


# ---------------------------------------------------------------- bench


@main.command()
@click.option("--records", "-n", default=20_000, show_default=True, type=click.IntRange(1), help="Records per signal.")
@click.option("--batch", default=1_000, show_default=True, type=click.IntRange(1), help="Records per insert call.")
@click.option(
    "--durability", type=click.Choice(["fsync", "os"]), default="fsync", show_default=True, help="Settings.durability."
)
@click.option(
    "--dir",
    "root",
    default=None,
    type=click.Path(file_okay=False),
    help="Parent of the temporary store (default: TMPDIR).",
)
@_rows_output_option
def bench(records: int, batch: int, durability: str, root: str | None, output: str) -> None:
    """Measure ingest, compaction and trace lookups on a temporary store (deleted afterwards).

    Inserts RECORDS synthetic spans, logs and metric points in batches of BATCH
    (each batch durable before the next), compacts everything to the cold tier
    and reads 100 traces back from it. For the full comparison against SQLite,
    see benchmarks/ingest.py.
    """
    from ._settings import Settings
    from ._store import Store
    from ._workload import Workload

    wl = Workload(seed=7)
    data: dict[str, list[Any]] = {"spans": wl.spans(records), "logs": wl.logs(records), "metrics": wl.metrics(records)}
    results: list[dict[str, Any]] = []

    def result(operation: str, n: int, seconds: float) -> None:
        results.append(
            {"operation": operation, "records": n, "seconds": round(seconds, 4), "records_per_s": round(n / seconds)}
        )

    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    lookups: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="tael-bench-", dir=root) as tmp,
        _progress(output, "bench", total=4 * records + 100) as update,
        Store(tmp, Settings(durability=durability)) as store,
    ):
        for signal, recs in data.items():
            update(description=f"inserting {signal}")
            insert = getattr(store, f"insert_{signal}")
            t0 = time.perf_counter()
            for i in range(0, len(recs), batch):
                insert(recs[i : i + batch])
                update(advance=len(recs[i : i + batch]))
            store.flush()
            result(f"insert {signal}", len(recs), time.perf_counter() - t0)
        update(description="compacting to the cold tier")
        t0 = time.perf_counter()
        report = store.compact(time.time_ns() + 10**9 * 86_400 * 365 * 100)
        result("compact", report.total_records, time.perf_counter() - t0)
        update(advance=records, description="reading traces back")
        trace_ids = list(dict.fromkeys(s.trace_id for s in data["spans"]))
        for trace_id in trace_ids[:: max(1, len(trace_ids) // 100)][:100]:
            t0 = time.perf_counter()
            store.get_trace(trace_id)
            lookups.append((time.perf_counter() - t0) * 1e3)
            update(advance=1)
    lookups.sort()
    out: dict[str, Any] = {
        "records": records,
        "batch": batch,
        "durability": durability,
        "results": results,
        "get_trace_cold_ms": {
            "lookups": len(lookups),
            "p50": round(lookups[len(lookups) // 2], 3),
            "max": round(lookups[-1], 3),
        },
    }
    if output == "json":
        _emit_json(out)
        return
    if output == "csv":
        columns = ("operation", "records", "seconds", "records_per_s")
        _emit_csv(columns, ([r[c] for c in columns] for r in results))
        return
    table = _table(
        f"{plural(records, 'record')} per signal, batches of {batch:,}, durability={durability}",
        "operation",
        "records",
        "seconds",
        "records/s",
        right=("records", "seconds", "records/s"),
    )
    for r in results:
        table.add_row(
            _t(r["operation"]), _t(f"{r['records']:,}"), _t(f"{r['seconds']:.3f}"), _t(f"{r['records_per_s']:,}")
        )
    console = _console()
    _print(console, table)
    g = out["get_trace_cold_ms"]
    console.print(
        f"get_trace from the cold tier: p50 {g['p50']:.2f} ms, max {g['max']:.2f} ms "
        f"over {plural(g['lookups'], 'trace')}"
    )
