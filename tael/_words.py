"""Counts in words, for every message that prints one ("1 span", "2 spans")."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` with thousands separators and ``noun`` in the number it takes: ``plural(1,
    "span")`` is "1 span", ``plural(1200, "log record")`` "1,200 log records". The plural
    is ``many`` when given (``plural(n, "child", "children")``), else the last word plus
    "es" after s, x, ch or sh, "ies" for a consonant and y, and "s" otherwise."""
    if n == 1:
        return f"1 {noun}"
    if many is None:
        head, space, last = noun.rpartition(" ")
        if last.endswith(("s", "x", "ch", "sh")):
            last += "es"
        elif len(last) > 1 and last[-1] == "y" and last[-2] not in "aeiou":
            last = last[:-1] + "ies"
        else:
            last += "s"
        many = head + space + last
    return f"{n:,} {many}"
