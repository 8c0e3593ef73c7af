"""LLM payload conventions, end to end: spans (and GenAI event log records) in each
convention, made by the real OpenTelemetry SDK and exported over OTLP/HTTP to a real
``tael serve`` subprocess, are found by the words of their prompts with default
Settings: English by word, Chinese, Japanese and Thai by any substring.

Each case puts one text, ``marker<i>`` plus a prompt in the three languages, into one
slot of one convention; a query ``marker<i> <word>`` must find exactly that case's
span, so every slot and every language is checked on its own. Controls: the same
kind of text under a key no rule covers, and JSON keys of message lists, are never
found."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tael
from tests.test_server import ROOT, Server, wait_for

ZH = "我想预订明天去上海的机票"  # I want to book a plane ticket to Shanghai tomorrow
JA = "東京駅の近くでおいしいラーメン屋を探しています"  # looking for a good ramen shop near Tokyo station
TH = "ฉันต้องการจองตั๋วเครื่องบินไปเชียงใหม่"  # I want to book a plane ticket to Chiang Mai
FOUND = ["上海", "机票", "预订明天", "ラーメン", "東京駅", "探して", "เชียงใหม่", "ตั๋วเครื่องบิน", "上", "refund"]
"""Words and substrings of PROMPT (one single character) that must find it."""
NOT_FOUND = ["海上", "北京", "大阪", "ラーメン屋さん", "กรุงเทพ", "refunds"]
"""Near misses: reversed or absent substrings, a longer word."""


def prompt(i: int) -> str:
    return f"marker{i} please refund: {ZH}。{JA}、{TH}"


def _messages(text: str) -> str:
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)


Put = Callable[[Any, str], None]
"""Puts a text into one slot of a convention, on an SDK span."""


def _attr(key: str, wrap: Callable[[str], str] = str) -> Put:
    return lambda span, text: span.set_attribute(key, wrap(text))


def _event(name: str, key: str, wrap: Callable[[str], str] = str) -> Put:
    return lambda span, text: span.add_event(name, {key: wrap(text), "gen_ai.system": "openai"})


CASES: list[tuple[str, Put]] = [
    # OpenTelemetry GenAI semantic conventions: attributes (JSON message parts) ...
    ("gen_ai.input.messages", _attr("gen_ai.input.messages", _messages)),
    (
        "gen_ai.output.messages",
        _attr(
            "gen_ai.output.messages",
            lambda t: json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": t}], "finish_reason": "stop"}],
                ensure_ascii=False,
            ),
        ),
    ),
    (
        "gen_ai.system_instructions",
        _attr("gen_ai.system_instructions", lambda t: json.dumps([{"type": "text", "content": t}], ensure_ascii=False)),
    ),
    ("gen_ai.tool.call.arguments", _attr("gen_ai.tool.call.arguments", lambda t: json.dumps({"request": t}))),
    ("gen_ai.tool.call.result", _attr("gen_ai.tool.call.result", lambda t: json.dumps({"answer": t}))),
    (
        "gen_ai.output.messages tool call",
        _attr(
            "gen_ai.output.messages",
            lambda t: json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "tool_call", "id": "call_1", "name": "book", "arguments": {"note": t}}],
                    }
                ],
                ensure_ascii=False,
            ),
        ),
    ),
    # ... and the GenAI events on spans
    ("gen_ai.user.message content", _event("gen_ai.user.message", "content")),
    ("gen_ai.system.message content", _event("gen_ai.system.message", "content")),
    ("gen_ai.assistant.message content", _event("gen_ai.assistant.message", "content")),
    ("gen_ai.tool.message content", _event("gen_ai.tool.message", "content")),
    (
        "gen_ai.assistant.message tool_calls",
        _event(
            "gen_ai.assistant.message",
            "tool_calls",
            lambda t: json.dumps(
                [{"id": "c1", "type": "function", "function": {"name": "book", "arguments": json.dumps({"q": t})}}]
            ),
        ),
    ),
    (
        "gen_ai.choice message",
        _event(
            "gen_ai.choice",
            "message",
            lambda t: json.dumps({"role": "assistant", "content": t}),
        ),
    ),
    (
        "gen_ai.user.message gen_ai.event.content",
        _event("gen_ai.user.message", "gen_ai.event.content", lambda t: json.dumps({"content": t})),
    ),
    ("gen_ai.content.prompt event", _event("gen_ai.content.prompt", "gen_ai.prompt")),
    # OpenLLMetry (traceloop)
    ("gen_ai.prompt.0.content", _attr("gen_ai.prompt.0.content")),
    ("gen_ai.prompt.3.content", _attr("gen_ai.prompt.3.content")),
    ("gen_ai.completion.0.content", _attr("gen_ai.completion.0.content")),
    (
        "gen_ai.completion.0.tool_calls.1.arguments",
        _attr("gen_ai.completion.0.tool_calls.1.arguments", lambda t: json.dumps({"query": t})),
    ),
    ("traceloop.entity.input", _attr("traceloop.entity.input", lambda t: json.dumps({"args": [t], "kwargs": {}}))),
    # OpenInference (Arize Phoenix)
    ("input.value", _attr("input.value")),
    ("output.value", _attr("output.value")),
    ("llm.input_messages.0.message.content", _attr("llm.input_messages.0.message.content")),
    ("llm.output_messages.0.message.content", _attr("llm.output_messages.0.message.content")),
    (
        "llm.input_messages.1.message.contents.0.message_content.text",
        _attr("llm.input_messages.1.message.contents.0.message_content.text"),
    ),
    (
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
        _attr(
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
            lambda t: json.dumps({"city": t}),
        ),
    ),
    ("tool.parameters", _attr("tool.parameters", lambda t: json.dumps({"description": t}))),
]

CONTROLS: list[tuple[str, Put]] = [
    # keys no default rule covers: a role, a pattern one segment short or long, an event not of GenAI
    ("gen_ai.prompt.0.role", _attr("gen_ai.prompt.0.role")),
    ("gen_ai.prompt.content", _attr("gen_ai.prompt.content")),
    ("gen_ai.prompt.0.x.content", _attr("gen_ai.prompt.0.x.content")),
    ("llm.input_messages.0.message.role", _attr("llm.input_messages.0.message.role")),
    ("content on a span", _attr("content")),
    ("content on an event of another name", _event("retry", "content")),
]
CONTROL_BASE = 1000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tael server fed every case over OTLP/HTTP by the SDK; yields its data directory."""
    from opentelemetry._logs import LogRecord as OtelLogRecord
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    server = Server(tmp_path_factory.mktemp("llm") / "data", index_commit_interval_s=0.1)
    try:
        resource = Resource.create({"service.name": "agent"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces")))
        tracer = provider.get_tracer("llm.test")
        for i, (name, put) in [*enumerate(CASES), *((CONTROL_BASE + j, c) for j, c in enumerate(CONTROLS))]:
            with tracer.start_as_current_span(f"chat {name}") as span:
                span.set_attribute("case", i)
                put(span, prompt(i))
        provider.force_flush()
        provider.shutdown()

        logs = LoggerProvider(resource=resource)
        logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=server.url + "/v1/logs")))
        logger = logs.get_logger("llm.test")
        logger.emit(
            OtelLogRecord(
                timestamp=time.time_ns(),
                event_name="gen_ai.user.message",
                body={"content": prompt(500)},
                attributes={"gen_ai.system": "openai"},
            )
        )
        logger.emit(
            OtelLogRecord(
                timestamp=time.time_ns(),
                event_name="gen_ai.choice",
                body={"index": 0, "finish_reason": "stop", "message": {"content": prompt(501)}},
            )
        )
        logs.force_flush()
        logs.shutdown()
        with tael.Store(server.data, read_only=True) as store:
            wait_for(lambda: len(store.query_logs(text="marker501", limit=5)) == 1, "the logs to be searchable")
            wait_for(
                lambda: len(store.query_traces(text="refund", limit=1000)) == len(CASES), "the spans to be searchable"
            )
        yield server.data
    finally:
        server.stop()


def _cases(store: tael.Store, text: str) -> set[int]:
    return {int(s.attributes["case"]) for s in store.query_traces(text=text, limit=1000)}


@pytest.mark.parametrize(("i", "name"), [(i, name) for i, (name, _put) in enumerate(CASES)])
def test_each_convention_is_found_by_its_words_in_every_language(served: Path, i: int, name: str) -> None:
    with tael.Store(served, read_only=True) as store:
        for word in FOUND:
            assert _cases(store, f"marker{i} {word}") == {i}, (name, word)
        for word in NOT_FOUND:
            assert _cases(store, f"marker{i} {word}") == set(), (name, word)
        assert _cases(store, f'"please refund" {ZH[6:9]}') == set(range(len(CASES)))  # 去上海: a substring


def test_keys_no_rule_covers_and_json_keys_are_not_searched(served: Path) -> None:
    with tael.Store(served, read_only=True) as store:
        for j, (name, _put) in enumerate(CONTROLS):
            assert _cases(store, f"marker{CONTROL_BASE + j}") == set(), name
        # every default-rule span is found; none of the controls is
        assert _cases(store, "上海") == set(range(len(CASES)))
        # JSON keys, roles and part types of message lists are not indexed
        for word in ("parts", "role", "assistant", "finish_reason", "tool_call", "call_1"):
            assert _cases(store, word) == set(), word
        # but a JSON leaf that is not structural is: the tool name and argument values
        assert _cases(store, "book") == {
            i for i, (name, _p) in enumerate(CASES) if name.endswith(("tool call", "tool_calls"))
        }


def test_genai_events_as_log_records_are_found(served: Path) -> None:
    with tael.Store(served, read_only=True) as store:
        for word in ("上海", "ラーメン", "เชียงใหม่", "refund"):
            found = store.query_logs(text=word, limit=10)
            assert sorted(r.attributes["otel.event_name"] for r in found) == ["gen_ai.choice", "gen_ai.user.message"]
        assert [r.attributes["otel.event_name"] for r in store.query_logs(text="marker501 机票")] == ["gen_ai.choice"]
        assert store.query_logs(text="海上") == []


def test_tael_search_cli_finds_chinese_japanese_and_thai(served: Path) -> None:
    for word, want in (("机票", len(CASES)), ("東京駅", len(CASES)), ("ตั๋วเครื่องบิน", len(CASES)), ("北京", 0)):
        out = subprocess.run(
            [sys.executable, "-m", "tael", "search", word, "--data", str(served), "--limit", "100", "--output", "json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        spans = json.loads(out.stdout)
        assert sorted(int(s["attributes"]["case"]) for s in spans) == list(range(want)), (word, out.stderr)
