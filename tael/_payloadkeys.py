"""Which attribute keys hold payload text: the rules of ``Settings.payload_attributes``.

A rule is an exact key (``input.value``), a pattern (``gen_ai.prompt.*.content``) or
either of those scoped to span events of some names (``gen_ai.*.message:content``).
In a pattern ``*`` matches a run of one or more characters within one dotted segment,
never a ``.``: ``gen_ai.prompt.*.content`` matches ``gen_ai.prompt.0.content`` and
``gen_ai.prompt.12.content``, not ``gen_ai.prompt.content`` nor
``gen_ai.prompt.0.tool_calls.1.content``; ``llm.*_messages.*.message.content`` matches
both of OpenInference's message lists. A rule holding ``:`` applies only to the
attributes of a span event whose name the part before the first ``:`` matches (the same
pattern syntax); the part after it is the attribute rule. A rule without ``:`` applies
to the span's attributes and to those of every one of its events, as exact keys always
did. docs/architecture.md (full-text search) lists the defaults and where each comes from.

Matching a key against the patterns is a regular expression; the answer is remembered
per key (up to ``_MAX_KNOWN`` keys, then forgotten at once), so the common case, a span
whose keys were all seen before, costs two set operations done in C.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable
from typing import Any, Final, NamedTuple

__all__ = ["NO_KEYS", "PayloadKeys", "rule_problem"]

_MAX_KNOWN: Final = 1 << 16  # keys whose answer is remembered before the memory starts over


class _State(NamedTuple):
    known: set[str]  # keys whose answers are in the two sets below
    span: set[str]  # keys a plain rule matches
    event: set[str]  # keys the attribute part of an event rule matches


def _regex(pattern: str) -> str:
    return "[^.]+".join(re.escape(piece) for piece in pattern.split("*"))


def rule_problem(rule: object) -> str | None:
    """What is wrong with one ``payload_attributes`` rule, or None."""
    if type(rule) is not str or not rule:
        return f"must be a non-empty str, got {rule!r}"
    event, sep, attr = rule.partition(":")
    if sep and (not event or not attr):
        return f"{rule!r}: an event rule is '<event name or pattern>:<attribute key or pattern>', both non-empty"
    if "**" in rule:
        return f"{rule!r}: '**' is not a pattern ('*' matches a run of characters within one dotted segment)"
    return None


class PayloadKeys:
    """The compiled rules. ``key in keys``: whether some rule's attribute part matches
    ``key`` (on the span or on some event: a superset, for quick tests);
    :meth:`of` and :meth:`of_event` are exact."""

    def __init__(self, rules: Iterable[str]) -> None:
        self.rules = tuple(rules)
        for rule in self.rules:
            problem = rule_problem(rule)
            if problem is not None:
                raise ValueError(f"payload attribute rule {problem}")
        plain = [r for r in self.rules if ":" not in r]
        scoped = [r.partition(":") for r in self.rules if ":" in r]
        self._exact = frozenset(r for r in plain if "*" not in r)
        patterns = [_regex(r) for r in plain if "*" in r]
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self._events = [(re.compile(_regex(ev)), re.compile(_regex(attr))) for ev, _sep, attr in scoped]
        self._any_event_attr = (
            re.compile("|".join(f"(?:{rx.pattern})" for _ev, rx in self._events)) if self._events else None
        )
        self._lock = threading.Lock()
        self._state = self._fresh()
        self._scoped: dict[tuple[str, str], bool] = {}

    def _fresh(self) -> _State:
        return _State(set(self._exact), set(self._exact), set())

    def _learned(self, keys: Collection[str]) -> _State:
        """The state holding the answers for ``keys``. A state is only ever added to
        (under the lock); when it is full a new one replaces it, and a reader that
        holds the old one keeps consistent answers."""
        state = self._state
        if state.known.issuperset(keys):
            return state
        with self._lock:
            state = self._state
            new = [k for k in keys if type(k) is str and k not in state.known]
            if len(state.known) + len(new) > _MAX_KNOWN:
                # start over, learning every key of ``keys`` afresh: those the old
                # state knew are not in ``new`` but must be in the state returned
                state = self._state = self._fresh()
                new = [k for k in keys if type(k) is str and k not in state.known]
            pattern, any_event = self._pattern, self._any_event_attr
            for key in new:
                if pattern is not None and pattern.fullmatch(key):
                    state.span.add(key)
                if any_event is not None and any_event.fullmatch(key):
                    state.event.add(key)
                state.known.add(key)  # last: whoever sees it known finds its answers
            return state

    def __contains__(self, key: object) -> bool:
        if type(key) is not str:
            return False
        state = self._learned((key,))
        return key in state.span or key in state.event

    def isdisjoint(self, keys: Iterable[str]) -> bool:
        """Whether no key of ``keys`` is ``in`` these rules."""
        distinct = set(keys)
        state = self._learned(distinct)
        return state.span.isdisjoint(distinct) and state.event.isdisjoint(distinct)

    def of(self, attrs: dict[str, Any]) -> list[str]:
        """The keys of a span's attributes that hold payload text (by name; the caller
        checks the value is a str)."""
        span = self._learned(attrs).span
        return [] if span.isdisjoint(attrs) else [k for k in attrs if k in span]

    def of_event(self, name: str, attrs: dict[str, Any]) -> list[str]:
        """The keys of the attributes of a span event named ``name`` that hold payload text."""
        state = self._learned(attrs)
        span, event = state.span, state.event
        out = [] if span.isdisjoint(attrs) else [k for k in attrs if k in span]
        if event.isdisjoint(attrs):
            return out
        scoped = self._scoped
        for key in attrs:
            if key in event and key not in span:
                hit = scoped.get((name, key))
                if hit is None:
                    hit = any(ev.fullmatch(name) and rx.fullmatch(key) for ev, rx in self._events)
                    if len(scoped) >= _MAX_KNOWN:
                        self._scoped = scoped = {}
                    scoped[(name, key)] = hit
                if hit:
                    out.append(key)
        return out


NO_KEYS: Final = PayloadKeys(())
"""Rules that match nothing."""
