"""Payload keys and what the full-text index takes of a payload, after review (issue 17):
the payload-key memory starting over never forgets a record's payload keys, a payload
past the index's cap is indexed by its beginning (and stays stored whole), and
``tael search`` shows snippets by the store's own payload keys."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tael
import tael._payloadkeys
from tael._cli import main
from tael._payloadkeys import PayloadKeys

from .conftest import make_span

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
