"""Payload keys and what the full-text index takes of a payload, after review (issue 17):
the payload-key memory starting over never forgets a record's payload keys, a payload
past the index's cap is indexed by its beginning (and stays stored whole), and
``tael search`` shows snippets by the store's own payload keys."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import tael
import tael._payloadkeys
from tael._cli import main
from tael._payloadkeys import PayloadKeys
from tael._search import matches
from tael._searchdocs import (
    INDEX_MAX_CHARS,
    INDEX_MAX_TEXTS,
    JSON_MAX_CHARS,
    capped,
    grams_of,
    index_texts,
    log_document,
    log_documents,
    query_grams,
    unspaced_runs,
)

from .conftest import make_log, make_span

PROMPT = "gen_ai.prompt.0.content"
NOW = time.time_ns()  # within retention: no warning about records past it


def test_the_key_memory_starting_over_keeps_the_keys_of_the_record_at_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tael._payloadkeys, "_MAX_KNOWN", 4)
    keys = PayloadKeys(("gen_ai.prompt.*.content",))
    assert keys.of({PROMPT: "x", "a1": 1, "a2": 2}) == [PROMPT]
    # the memory (3 keys) cannot take two more: it starts over while this record's
    # prompt key, known to the old memory, must be learned again by the new one
    assert keys.of({PROMPT: "x", "b1": 1, "b2": 2}) == [PROMPT]
    assert keys.of({"c1": 1, PROMPT: "x", "c2": 2}) == [PROMPT]
    assert keys.of_event("e", {"d1": 1, "d2": 2, PROMPT: "x"}) == [PROMPT]
    assert PROMPT in keys
    assert not keys.isdisjoint([PROMPT, "e1", "e2", "e3"])
    assert keys.of({"f1": 1, "f2": 2, "f3": 3}) == []


def test_high_cardinality_keys_never_hide_a_stored_span_s_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tael._payloadkeys, "_MAX_KNOWN", 4)
    settings = tael.Settings(payload_attributes=("gen_ai.prompt.*.content",))
    spans = [
        make_span(
            start_ns=NOW + i,
            end_ns=NOW + i + 1,
            attributes={PROMPT: f"lighthouse number{i}", f"user.{i}.a": i, f"user.{i}.b": i},
        )
        for i in range(20)
    ]
    with tael.Store(tmp_path / "d", settings) as store:
        for span in spans:  # one batch each: each meets the memory where the last one left it
            store.insert_spans([span])
        store.flush()
        assert len(store.query_traces(text="lighthouse", limit=100)) == 20
        assert [s.attributes[PROMPT] for s in store.query_traces(text="number13")] == ["lighthouse number13"]


# ---------------------------------------------------------------- tael search snippets


def test_tael_search_shows_snippets_by_the_store_s_own_payload_keys(tmp_path: Path) -> None:
    data, config = tmp_path / "d", tmp_path / "c.toml"
    config.write_text('payload_attributes = ["my.prompt"]\n')
    text = "where does the lighthouse keeper sleep at night"
    with tael.Store(data, tael.Settings.from_file(config)) as store:
        store.insert_spans(
            [make_span(start_ns=NOW, end_ns=NOW + 1, attributes={"my.prompt": text, "other": "not a payload"})]
        )
    result = CliRunner().invoke(main, ["search", "lighthouse", "--data", str(data)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "matching lighthouse" in result.output
    assert text in result.output  # the snippet: the store's key, not the built-in ones
    assert "not a payload" not in result.output
    # the same store's hits as JSON carry the record whole, as before
    found = json.loads(CliRunner().invoke(main, ["search", "keeper", "--data", str(data), "--output", "json"]).output)
    assert [hit["attributes"]["my.prompt"] for hit in found] == [text]


# ---------------------------------------------------------------- what is indexed of a long payload

CAP = INDEX_MAX_CHARS


def _up_to_cap(last: str, after: str) -> str:
    """A text whose word ``last`` ends exactly at the index's cap, ``after`` just past it."""
    head = "opening words "
    fill = "ab " * ((CAP - len(head) - len(last)) // 3)
    text = head + fill + " " * (CAP - len(head) - len(fill) - len(last)) + last
    assert len(text) == CAP
    return text + " " + after + " the end"


def _search(store: tael.Store, text: str) -> list[str]:
    return sorted(s.span_id for s in store.query_traces(text=text, limit=10))


def test_a_payload_past_the_cap_is_indexed_by_its_beginning_and_stored_whole(tmp_path: Path) -> None:
    plain = _up_to_cap("lastword", "pastword")
    messages = json.dumps(  # a message list, taken apart as JSON: its leaves count, not its keys
        [
            {"role": "user", "content": "jsonopening " + "cd " * (CAP // 3) + "jsonpast"},
            {"role": "user", "content": "secondmessage"},
        ]
    )
    assert CAP < len(messages) <= JSON_MAX_CHARS
    zh = "我想预订明天去上海的机票" * (CAP // 12 + 1) + "北京烤鸭"  # 北京烤鸭 starts past the cap
    with tael.Store(tmp_path / "d") as store:
        store.insert_spans(
            [
                make_span(span_id="1" * 16, start_ns=NOW, end_ns=NOW + 1, attributes={"input.value": plain}),
                make_span(
                    span_id="2" * 16,
                    start_ns=NOW,
                    end_ns=NOW + 1,
                    attributes={"gen_ai.input.messages": messages, "gen_ai.output.messages": "shortanswer"},
                ),
                make_span(span_id="3" * 16, start_ns=NOW, end_ns=NOW + 1, attributes={"output.value": zh}),
            ]
        )
        store.flush()
        assert _search(store, "opening") == ["1" * 16]
        assert _search(store, '"ab lastword"') == ["1" * 16]  # the last word before the cap, whole
        assert _search(store, "pastword") == []  # past the cap: not indexed
        assert _search(store, "jsonopening") == ["2" * 16]
        assert _search(store, "jsonpast") == []  # the end of the long leaf
        assert _search(store, "secondmessage") == ["2" * 16]  # a short leaf after it stays whole
        assert _search(store, "role") == []  # still taken apart as JSON
        assert _search(store, "shortanswer") == ["2" * 16]  # a short text beside a huge one stays whole
        assert _search(store, "上海的机票") == ["3" * 16]
        assert _search(store, "北京") == []
        (one,) = store.query_traces(text="lastword")
        assert one.attributes["input.value"] == plain  # stored whole
    # a rebuild from what is stored indexes the same beginning
    result = CliRunner().invoke(main, ["rebuild-index", "--data", str(tmp_path / "d")])
    assert result.exit_code == 0, (result.output, result.exception)
    with tael.Store(tmp_path / "d", read_only=True) as store:
        assert _search(store, "lastword") == ["1" * 16]
        assert _search(store, "pastword") == []
        assert _search(store, "shortanswer") == ["2" * 16]
        assert _search(store, "北京") == []


def test_a_log_body_past_the_cap_is_indexed_by_its_beginning(tmp_path: Path) -> None:
    body = _up_to_cap("lastword", "pastword")
    zh = "我想预订明天去上海的机票" * (CAP // 12 + 1) + "北京烤鸭"
    with tael.Store(tmp_path / "d") as store:
        store.insert_logs([make_log(time_ns=NOW, body=body), make_log(time_ns=NOW + 1, body=zh)])
        store.flush()
        assert [r.body for r in store.query_logs(text='"ab lastword"')] == [body]  # stored whole
        assert store.query_logs(text="pastword") == []
        assert [r.time_ns for r in store.query_logs(text="上海的机票")] == [NOW + 1]
        assert store.query_logs(text="北京") == []
        assert [r.time_ns for r in store.query_logs(text="预")] == [NOW + 1]  # a single character
        assert store.query_logs(text="鸭") == []
    # the record-by-record builder (a rebuild from the cold tier) cuts the same way
    bodies = pa.array([body, zh, "short"])
    assert log_documents(
        pa.array([1, 2, 3], pa.int64()),
        5,
        pa.array([0, 1, 2], pa.int32()),
        pa.array(["s"] * 3),
        pa.array([9] * 3, pa.int32()),
        pa.nulls(3, pa.binary(16)),
        bodies,
    ) == [log_document(t + 1, 5, t, "s", 9, None, b) for t, b in enumerate(bodies.to_pylist())]


def test_index_texts_bounds_the_texts_and_characters_of_a_document() -> None:
    many = json.dumps([{"content": f"w{i}"} for i in range(INDEX_MAX_TEXTS + 10)])
    texts = index_texts([many, "after"])
    assert texts == [f"w{i}" for i in range(INDEX_MAX_TEXTS)]  # the first ones; "after" is past the count
    huge_json = "[" + "0," * (JSON_MAX_CHARS // 2) + "0]"  # too long to parse: plain text, its beginning
    assert index_texts([huge_json]) == [huge_json[:CAP]]
    assert capped(["a" * 10, "b" * 3, "c" * 20], 20) == ["a" * 8, "b" * 3, "c" * 8]
    assert capped(["x" * 50], 20) == ["x" * 20]
    assert capped(["x" * 5, "y" * 5], 20) == ["x" * 5, "y" * 5]
    level = (CAP - 5) // 2
    assert index_texts(["z" * CAP, "y" * CAP, "short"]) == ["z" * level, "y" * level, "short"]


def test_the_grams_of_a_long_run_are_those_of_grams_of() -> None:
    # a long run's grams are written by numpy, a short one's as str: the same tokens
    for body in ("上海" * 200 + "。ab 𠀋𠀌" * 3 + "東京駅" * 90, "x上y", "上", "abc"):
        doc = json.loads(log_document(0, 1, 0, "s", 9, None, body))
        want = [" ".join(grams_of(run)) for run in unspaced_runs(body)]
        assert doc.get("grams", []) == ([" ".join(want)] if want else [])


def test_a_grams_check_of_a_hit_agrees_with_the_grams_index() -> None:
    # a hit is checked against its stored texts; a run of unspaced characters by substring,
    # which must agree with the phrase of its bigrams over the grams the index holds
    rng = random.Random(7)
    alphabet = "上海机票東京駅ラーメンเชียงใหม่ ab,。"
    for _ in range(400):
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))) for _ in range(rng.randrange(1, 3))]
        query = "".join(rng.choice(alphabet[:-5]) for _ in range(rng.randrange(1, 4)))
        for run in unspaced_runs(query):
            seq = query_grams(run)
            indexed = [grams_of(t) for t in texts]
            want = any(tokens[i : i + len(seq)] == seq for tokens in indexed for i in range(len(tokens)))
            assert matches(texts, [seq]) == want, (texts, run)
