"""Rendering for the command line that is not one command's: fitting a rich table to
the terminal with its column names whole, and rows as CSV. rich is imported inside the
functions, so importing this module costs nothing (``tael --help`` stays instant)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


def csv_cell(value: Any) -> str:
    """A CSV cell: text as it is, numbers as Python writes them, None empty, true/false, and
    anything nested (attributes, events, lists, dataclasses) as JSON text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A header row of ``columns``, then ``rows``, as CSV (the csv module's quoting: a cell
    holding a comma, a quote or a line break is quoted), lines ending in a newline."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def fit_table(table: Table, width: int) -> Any:
    """``table`` fitted to ``width`` columns of terminal, column names always whole.

    Rich left alone shrinks every column evenly when a table is too wide, folding
    column names a few letters per line. Here each column is at least as wide as its
    name; the room left goes to the columns whose values need the least first (ids and
    times stay whole), and the widest values fold inside the width that remains. When
    even the names do not fit side by side (a SQL result of many long column names),
    each row is printed as ``name  value`` lines instead."""
    from rich.cells import cell_len
    from rich.text import Text

    columns = table.columns
    if not columns:
        return table
    n = len(columns)
    _top, right, _bottom, left = table.padding
    overhead = (left + right) * n - (0 if table.pad_edge else left + right)
    if table.box is not None:
        overhead += n - 1 + (2 if table.show_edge else 0)
    room = width - overhead
    heads = [cell_len(str(c.header)) for c in columns]
    wants = [
        max([h] + [cell_len(line) for cell in c.cells for line in _plain(cell).splitlines()])
        for h, c in zip(heads, columns, strict=True)
    ]
    if sum(wants) <= room:
        return table
    if sum(heads) > room:
        return _rows_as_lines(table)
    widths = list(heads)
    spare = room - sum(heads)
    order = sorted(range(n), key=lambda i: wants[i] - heads[i])
    for left_to_fill, i in enumerate(order):
        give = min(wants[i] - heads[i], spare // (n - left_to_fill))
        widths[i] += give
        spare -= give
    for column, w, h in zip(columns, widths, heads, strict=True):
        column.width = w
        column.min_width = h
        column.header = Text(str(column.header), no_wrap=True, overflow="ellipsis")
    return table


def _plain(cell: Any) -> str:
    return cell.plain if hasattr(cell, "plain") else str(cell)


def _rows_as_lines(table: Table) -> Any:
    """Each row of ``table`` as lines of ``column name  value``, a blank line between rows:
    the names stay whole however many columns there are, the values fold."""
    from rich.console import Group
    from rich.table import Table as Grid
    from rich.text import Text

    names = [str(c.header) for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    rows = len(cells[0]) if cells else 0
    parts: list[Any] = []
    for r in range(rows):
        grid = Grid.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, column in zip(names, cells, strict=True):
            grid.add_row(Text(name), column[r])
        if r:
            parts.append(Text(""))
        parts.append(grid)
    return Group(*parts)
