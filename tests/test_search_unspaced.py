"""Full-text search of scripts written without spaces (Chinese, Japanese, Thai) by
substring, payload attribute rules (patterns, event scopes), JSON payloads indexed by
their text, and the rebuild of a format-2 index (issue 17)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import tantivy

import tael
from tael._payloadkeys import PayloadKeys
from tael._search import parse_text
from tael._searchdocs import FIELDS, WORDS_PATTERN, index_texts, schema_matches, unspaced_runs

from .conftest import make_span, span_id, trace_id

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
DAY = 86_400 * 10**9

ZH = "我想预订明天去上海的机票东京大阪北京人工智能模型数据"
JA = "ひらがなカタカナーの東京駅ラーメン屋を探しています"
TH = "ฉันต้องการจองตั๋วเครื่องบินไปเชียงใหม่ภาษาไทย"
RUN_CHARS = [ZH, JA, TH]


def _sentence(rng: random.Random) -> tuple[str, list[str]]:
    """A text mixing English words and runs of one script each; and its runs."""
    pieces, runs = [], []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.3:
            pieces.append(rng.choice(["hello", "GPT", "ok", "refund", "42"]))
        else:
            chars = rng.choice(RUN_CHARS)
            run = "".join(rng.choice(chars) for _ in range(rng.randint(1, 9)))
            pieces.append(run)
            runs.append(run)
    sep = rng.choice([" ", "", "、", ", "])
    text = sep.join(pieces)
    # what the text's unspaced runs really are (two runs of different scripts may touch)
    return text, unspaced_runs(text)


@pytest.mark.parametrize("seed", [1, 2])
def test_unspaced_substrings_match_a_model_hot_cold_and_rebuilt(tmp_path: Path, seed: int) -> None:
    """Every substring of a run of Chinese, Japanese or Thai finds exactly the spans and
    logs whose text holds it, through the hot tier, the cold tier and a rebuilt index;
    and a string that is not a substring finds nothing."""
    rng = random.Random(seed)
    spans, logs, span_runs, log_runs = [], [], [], []
    for i in range(120):
        texts = [_sentence(rng) for _ in range(rng.randint(1, 2))]
        spans.append(
            make_span(
                trace_id=trace_id(i + 1),
                span_id=span_id(i + 1),
                start_ns=T0 + i * DAY // 60,
                end_ns=T0 + i * DAY // 60 + 1,
                attributes={f"gen_ai.prompt.{k}.content": t for k, (t, _r) in enumerate(texts)},
            )
        )
        span_runs.append([r for _t, runs in texts for r in runs])
        body, runs = _sentence(rng)
        logs.append(tael.LogRecord(time_ns=T0 + i * DAY // 60, service="api", severity_number=9, body=body))
        log_runs.append(runs)
    queries = set()
    for runs in span_runs + log_runs:
        for run in runs:
            a = rng.randrange(len(run))
            queries.add(run[a : a + rng.randint(1, 4)])
    queries |= {"海上", "京東", "ไทยภา", "上海北京人工"}

    def want_spans(q: str) -> list[str]:
        return sorted(s.span_id for s, runs in zip(spans, span_runs, strict=True) if any(q in r for r in runs))

    def want_logs(q: str) -> list[int]:
        return sorted(r.time_ns for r, runs in zip(logs, log_runs, strict=True) if any(q in x for x in runs))

    data = tmp_path / "data"

    def check(store: tael.Store) -> None:
        for q in sorted(queries):
            assert sorted(s.span_id for s in store.query_traces(text=q, limit=1000)) == want_spans(q), q
            assert sorted(r.time_ns for r in store.query_logs(text=q, limit=1000)) == want_logs(q), q

    with tael.Store(data) as store:
        store.insert_spans(spans)
        store.insert_logs(logs)
        store.compact(T0 + DAY)  # half of it goes cold
        store.flush()
        stats = store.stats()
        assert stats.cold_records["spans"] > 0 and stats.hot_records["spans"] > 0
        check(store)
    assert tael.rebuild_index(data) == len(spans) + len(logs)
    with tael.Store(data) as store:
        check(store)
    assert any(want_spans(q) for q in queries) and any(not want_spans(q) for q in queries)  # both kinds asked


def test_words_split_as_the_simple_tokenizer_outside_unspaced_scripts() -> None:
    """``tael_words`` splits text without Chinese, Japanese or Thai exactly as format 2's
    simple tokenizer did (Latin search answers as before)."""
    simple = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).build()
    words = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(WORDS_PATTERN)).build()
    pool = (
        "abcXYZ019 _-.,;:'\"/\\\t\n()[]{}@#$%^&*+=~`|<>?!"
        "éÉßøÅçñü"  # Latin with diacritics
        "абвЖЯ"  # Cyrillic
        "αβγΩ"  # Greek
        "مرحبا"  # Arabic
        "שלום"  # Hebrew
        "한국어"  # Hangul (spaced)
        "हिन्दी"  # Devanagari, with combining marks
        "٣²½Ⅻ"  # other numbers
        "\u0301\u200b\u00a0"  # a combining accent, zero-width space, no-break space
        "😀🚀"  # emoji
        "\uff41\uff42\uff43\uff11\uff12"  # fullwidth Latin and digits
    )
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        assert words.analyze(text) == simple.analyze(text), repr(text)


def test_a_word_mixing_scripts_asks_for_each_part() -> None:
    assert parse_text("GPT模型") == [["模型"], ["gpt"]]
    assert parse_text("上海") == [["上海"]]
    assert parse_text("上") == [["上"]]
    assert parse_text('"rate limit" 预订明天') == [["rate", "limit"], ["预订", "订明", "明天"]]
    assert parse_text("เชียงใหม่") == [["เช", "ชี", "ีย", "ยง", "งใ", "ให", "หม", "ม่"]]
    with pytest.raises(ValueError, match="no searchable words"):
        parse_text("、。")


def test_payload_rules_patterns_and_event_scopes() -> None:
    keys = PayloadKeys(
        ("input.value", "gen_ai.prompt.*.content", "llm.*_messages.*.message.content", "gen_ai.*.message:content")
    )
    attrs = {
        "input.value": "a",
        "gen_ai.prompt.0.content": "b",
        "gen_ai.prompt.12.content": "c",
        "gen_ai.prompt.content": "no: * is one or more characters",
        "gen_ai.prompt.0.x.content": "no: * never crosses a dot",
        "gen_ai.prompt.0.contents": "no",
        "xgen_ai.prompt.0.content": "no: the whole key",
        "llm.input_messages.3.message.content": "d",
        "llm.output_messages.0.message.content": "e",
        "llm._messages.0.message.content": "no: * matches at least one character",
        "content": "only on a GenAI message event",
    }
    assert keys.of(attrs) == [
        "input.value",
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.12.content",
        "llm.input_messages.3.message.content",
        "llm.output_messages.0.message.content",
    ]
    assert keys.of_event("gen_ai.user.message", attrs) == [*keys.of(attrs), "content"]
    assert keys.of_event("gen_ai.tool.message", {"content": "x"}) == ["content"]
    assert keys.of_event("gen_ai.choice", {"content": "x"}) == []
    assert keys.of_event("gen_ai.user.x.message", {"content": "x"}) == []
    assert keys.of_event("retry", {"content": "x", "input.value": "y"}) == ["input.value"]
    assert "content" in keys and "gen_ai.prompt.7.content" in keys and "gen_ai.prompt" not in keys
    assert not keys.isdisjoint(["zzz", "content"]) and keys.isdisjoint(["zzz", "gen_ai.prompt.content"])
    # answers are the same once remembered, and after the memory starts over
    import tael._payloadkeys as pk

    small = PayloadKeys(("a.*",))
    for n in range(3 * pk._MAX_KNOWN // 2):
        assert small.of({f"a.{n}": 1, f"b.{n}": 2}) == [f"a.{n}"]
    assert small.of({"a.1": 1}) == ["a.1"]


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        (("",), "non-empty"),
        (("gen_ai.**.content",), r"\*\*"),
        ((":content",), "event rule"),
        (("gen_ai.user.message:",), "event rule"),
        ((3,), "non-empty str"),
    ],
)
def test_bad_payload_rules_are_refused(rules: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match="payload_attributes") as info:
        tael.Settings(payload_attributes=rules)  # type: ignore[arg-type]
    assert info.match(match)


def test_json_payloads_are_indexed_by_their_text() -> None:
    messages = json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "id": "call_9",
                        "name": "get_weather",
                        "arguments": {"city": "上海", "days": 3},
                    },
                ],
                "finish_reason": "tool_call",
            },
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_9", "response": '{"temp": 21.5}'}]},
        ]
    )
    assert index_texts([messages, "plain [text]", "[not json", "{}", '"a string"']) == [
        "Be brief.",
        "get_weather",
        "上海",
        "3",
        "21.5",
        "plain [text]",
        "[not json",
        '"a string"',
    ]


def test_json_payload_search_skips_keys_and_roles(store: tael.Store) -> None:
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}])
    store.insert_spans(
        [
            make_span(span_id=span_id(1), attributes={"gen_ai.input.messages": messages}),
            make_span(span_id=span_id(2), attributes={"gen_ai.input.messages": "[broken json with role parts"}),
            make_span(span_id=span_id(3), attributes={"input.value": '{"question": "role of \\"parts\\" in Paris"}'}),
        ]
    )
    store.flush()

    def found(q: str) -> list[str]:
        return sorted(s.span_id for s in store.query_traces(text=q))

    assert found("paris") == [span_id(1), span_id(3)]
    assert found('"weather in paris"') == [span_id(1)]
    assert found("role") == [span_id(2), span_id(3)]  # a value's word, or a text that does not parse
    assert found("parts") == [span_id(2), span_id(3)]
    assert found("user") == []
    assert found("text") == []


def test_a_rebuild_finds_spans_by_pattern_and_event_rules(tmp_path: Path) -> None:
    """A rebuild picks hot span rows by the rules' keys in their attribute and event
    JSON: patterns (their ``*`` part may hold characters JSON escapes) and event rules."""
    data = tmp_path / "data"
    s = tael.Settings(payload_attributes=("p.*.content", "gen_ai.*.message:content"))
    spans = [
        make_span(span_id=span_id(1), start_ns=T0, end_ns=T0 + 1, attributes={"p.0.content": "alpha 上海"}),
        make_span(span_id=span_id(2), start_ns=T0 + 1, end_ns=T0 + 2, attributes={'p."q\\.content': "alpha 上海"}),
        make_span(
            span_id=span_id(3),
            start_ns=T0 + 2,
            end_ns=T0 + 3,
            events=[tael.SpanEvent(time_ns=T0, name="gen_ai.user.message", attributes={"content": "alpha 上海"})],
        ),
        make_span(
            span_id=span_id(4),
            start_ns=T0 + 3,
            end_ns=T0 + 4,
            events=[tael.SpanEvent(time_ns=T0, name="other", attributes={"content": "alpha 上海"})],
            attributes={"p.content": "alpha 上海"},
        ),
    ]
    want = [span_id(1), span_id(2), span_id(3)]
    with tael.Store(data, s) as store:
        store.insert_spans(spans)
        store.flush()
        assert sorted(x.span_id for x in store.query_traces(text="alpha 上海")) == want
    assert tael.rebuild_index(data, s) == 3
    with tael.Store(data, s) as store:
        assert sorted(x.span_id for x in store.query_traces(text="alpha 上海")) == want
        store.compact(T0 + DAY)
        assert store.stats().cold_records["spans"] == 4
    assert tael.rebuild_index(data, s) == 3
    with tael.Store(data, s) as store:
        assert sorted(x.span_id for x in store.query_traces(text="上海")) == want


def _format_2_index(path: Path, spans: list[tael.Span]) -> None:
    """An index as tael wrote it before issue 17 (format 2): no ``grams``, ``text``
    tokenized by ``tael_text`` (the simple tokenizer)."""
    shutil.rmtree(path)
    path.mkdir()
    sb = tantivy.SchemaBuilder()
    for name, kind, opts in FIELDS:
        if name == "grams":
            continue
        if kind == "text":
            tokenizer = "tael_text" if name == "text" else opts["indexing"]["tokenizer"]
            sb.add_text_field(name, tokenizer_name=tokenizer, index_option=opts["indexing"]["record"])
        elif kind == "u64":
            sb.add_unsigned_field(name, indexed=opts["indexed"], fast=opts["fast"])
        else:
            sb.add_integer_field(name, indexed=opts["indexed"], fast=opts["fast"])
    index = tantivy.Index(sb.build(), path=str(path))
    index.register_tokenizer(
        "tael_text",
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .build(),
    )
    writer = index.writer(heap_size=15 << 20, num_threads=1)
    for s in spans:
        trace, sid = bytes.fromhex(s.trace_id), bytes.fromhex(s.span_id)
        doc = {
            "signal": 1,
            "time": s.start_ns,
            "lsn": 0,
            "k1": int.from_bytes(trace[:8]),
            "k2": int.from_bytes(trace[8:]),
            "k3": int.from_bytes(sid),
            "service": s.service,
            "level": 0,
            "text": [v for v in s.attributes.values() if isinstance(v, str)],
        }
        writer.add_json(json.dumps(doc))
    writer.commit()
    writer.wait_merging_threads()


def test_an_index_of_format_2_is_rebuilt_on_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spans = [
        make_span(span_id=span_id(1), attributes={"gen_ai.prompt": "我想预订明天去上海的机票"}),
        make_span(span_id=span_id(2), attributes={"gen_ai.prompt": "rate limit exceeded"}),
        make_span(span_id=span_id(3), attributes={"gen_ai.prompt.0.content": "東京駅 ramen"}),  # a pattern key
    ]
    with tael.Store(data) as store:
        store.insert_spans(spans)
        store.flush()
    _format_2_index(data / "index", spans)
    meta = json.loads((data / "index" / "meta.json").read_bytes())
    assert not schema_matches(meta)
    # the old way: only the whole run finds the Chinese prompt
    old = tantivy.Index.open(str(data / "index"))
    old.register_tokenizer(
        "tael_text", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.lowercase()).build()
    )
    term = tantivy.Query.term_query(old.schema, "text", "上海")
    assert old.searcher().search(term, limit=10).hits == []
    with tael.Store(data, read_only=True) as store, pytest.raises(tael.StorageError, match="earlier tael"):
        store.query_traces(text="rate")
    with tael.Store(data) as store:  # a writable open rebuilds it
        assert schema_matches(json.loads((data / "index" / "meta.json").read_bytes()))
        assert [s.span_id for s in store.query_traces(text="上海")] == [span_id(1)]
        assert [s.span_id for s in store.query_traces(text="机票")] == [span_id(1)]
        assert [s.span_id for s in store.query_traces(text='"rate limit"')] == [span_id(2)]
        assert [s.span_id for s in store.query_traces(text="東京")] == [span_id(3)]
    with tael.Store(data, read_only=True) as store:
        assert [s.span_id for s in store.query_traces(text="ramen")] == [span_id(3)]


def test_arabic_is_found_with_or_without_its_vowel_marks_hot_cold_and_rebuilt(tmp_path: Path) -> None:
    """Arabic is mostly written without harakat: a query without them finds text with them
    and the reverse (the text field folds them, in documents and queries alike)."""
    data = tmp_path / "d"
    marked = "مَرْحَبًا، أُرِيدُ حَجْزَ رِحْلَةٍ إِلَى القَاهِرَةِ"
    bare = "تم الدفع بنجاح للطلب رقم ٤٢"
    with tael.Store(data) as store:
        store.insert_spans([make_span(start_ns=T0, end_ns=T0 + 1, attributes={"gen_ai.prompt.0.content": marked})])
        store.insert_logs([tael.LogRecord(time_ns=T0, body=bare, service="pay")])
        store.insert_logs([tael.LogRecord(time_ns=T0 + 1, body="تـــم", service="pay")])  # tatweel
        store.flush()

        def found() -> list[int]:
            return [
                len(store.query_traces(text="القاهرة")),
                len(store.query_traces(text="مرحبا")),
                len(store.query_traces(text='"رحلة إلى القاهرة"')),
                len(store.query_traces(text="القَاهِرَةِ")),
                len(store.query_logs(text="الدَّفْعُ")),
                len(store.query_logs(text="تم")),
                len(store.query_traces(text="القاهره")),  # another word (final heh): not a match
            ]

        assert found() == [1, 1, 1, 1, 1, 2, 0]
        store.compact(T0 + 10)
        assert found() == [1, 1, 1, 1, 1, 2, 0]
    tael.rebuild_index(data)
    with tael.Store(data) as store:
        assert [len(store.query_traces(text="مرحبا")), len(store.query_logs(text="الدفع"))] == [1, 1]
