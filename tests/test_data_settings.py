"""Settings that shape stored data live in the data directory (settings.json, issue 17):
every open uses them, and changing one is explicit."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import tael
from tael._cli import main

from .conftest import make_span

DAY_NS = 86_400 * 10**9


def stored(data: Path) -> dict[str, object]:
    doc = json.loads((data / "settings.json").read_text())
    assert doc["version"] == 1
    settings: dict[str, object] = doc["settings"]
    return settings


def cli(*args: str | Path, code: int = 0) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def prompt_span(key: str, text: str, start_ns: int = 1_000) -> tael.Span:
    return make_span(start_ns=start_ns, end_ns=start_ns + 1, attributes={key: text})


def test_a_new_store_keeps_the_settings_it_was_created_with(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(payload_attributes=("my.prompt",), retention_logs_days=3)):
        pass
    values = stored(data)
    assert values["payload_attributes"] == ["my.prompt"]
    assert values["retention_logs_days"] == 3
    assert values["hot_window_s"] == tael.Settings().hot_window_s
    assert "durability" not in values  # how this process writes, not what the data is


def test_an_open_without_settings_uses_the_stored_payload_keys(tmp_path: Path) -> None:
    # the trap: a store written with custom payload keys answered a search without them with []
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(payload_attributes=("my.prompt",))) as store:
        store.insert_spans([prompt_span("my.prompt", "where is the lighthouse keeper")])
        store.flush()
    with tael.Store(data) as store:
        assert store.settings.payload_attributes == ("my.prompt",)
        store.insert_spans([prompt_span("my.prompt", "the lighthouse again", start_ns=5_000)])
        store.flush()
        assert len(store.query_traces(text="lighthouse")) == 2  # the new write was indexed by the stored key
    with tael.Store(data, read_only=True) as reader:
        assert reader.settings.payload_attributes == ("my.prompt",)
        assert len(reader.query_traces(text="keeper")) == 1


def test_tael_search_without_config_finds_what_a_configured_writer_stored(tmp_path: Path) -> None:
    data, config = tmp_path / "d", tmp_path / "c.toml"
    config.write_text('payload_attributes = ["my.prompt"]\n')
    with tael.Store(data, tael.Settings.from_file(config)) as store:
        store.insert_spans([prompt_span("my.prompt", "a question about lighthouses")])
    found = json.loads(cli("search", "lighthouses", "--data", data, "--output", "json"))
    assert [hit["attributes"]["my.prompt"] for hit in found] == ["a question about lighthouses"]


def test_other_payload_keys_at_open_fail_naming_the_setting_and_the_command(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(payload_attributes=("my.prompt",))):
        pass
    before = (data / "settings.json").read_bytes()
    for read_only in (False, True):
        with pytest.raises(tael.SettingsConflictError) as err:
            tael.Store(data, tael.Settings(payload_attributes=("other.prompt",)), read_only=read_only)
        message = str(err.value)
        assert "payload_attributes" in message and "tael rebuild-index" in message
        assert "'my.prompt'" in message and "'other.prompt'" in message
    assert (data / "settings.json").read_bytes() == before
    with tael.Store(data) as store:  # the failed opens released the directory
        assert store.settings.payload_attributes == ("my.prompt",)


def test_a_safe_change_at_open_is_stored_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(retention_spans_days=2)):
        pass
    with tael.Store(data, tael.Settings(retention_spans_days=5), read_only=True) as reader:
        assert reader.settings.retention_spans_days == 5  # for this process only
    assert stored(data)["retention_spans_days"] == 2
    with (
        caplog.at_level(logging.INFO, logger="tael._datasettings"),
        tael.Store(data, tael.Settings(retention_spans_days=5)) as store,
    ):
        assert store.settings.retention_spans_days == 5
    assert stored(data)["retention_spans_days"] == 5
    assert any("retention_spans_days" in r.getMessage() and "2" in r.getMessage() for r in caplog.records)
    with tael.Store(data) as store:
        assert store.settings.retention_spans_days == 5


def test_maintenance_follows_the_stored_retention(tmp_path: Path) -> None:
    data = tmp_path / "d"
    now = time.time_ns()
    with tael.Store(data, tael.Settings(retention_spans_days=1)) as store:
        store.insert_spans([make_span(start_ns=now - 3 * DAY_NS, end_ns=now - 3 * DAY_NS + 1)])
        store.insert_spans([make_span(start_ns=now - 1_000, end_ns=now)])
    with tael.Store(data) as store:  # default settings: 7 days were it not for the stored 1
        report = store.enforce_retention(now)
        assert report.hot_records_dropped["spans"] == 1
        assert store.stats().signals["spans"].count == 1


def test_settings_set_goes_back_to_a_default_and_refuses_payload_keys(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(hot_window_s=60, retention_logs_days=2)):
        pass
    cli("settings", "set", "--data", data, "hot_window_s=3600", "retention_logs_days=7.5")
    assert stored(data)["hot_window_s"] == 3600
    assert stored(data)["retention_logs_days"] == 7.5
    with tael.Store(data) as store:
        assert store.settings.hot_window_s == 3600
    out = cli("settings", "set", "--data", data, 'payload_attributes=["x"]', code=1)
    assert "tael rebuild-index" in out
    out = cli("settings", "set", "--data", data, "durability=os", code=1)
    assert "durability" in out and "not a setting kept with the data" in out
    out = cli("settings", "set", "--data", data, "retention_logs_days=-1", code=1)
    assert "retention_logs_days" in out
    assert stored(data)["retention_logs_days"] == 7.5  # nothing written by a refused change
    shown = json.loads(cli("settings", "show", "--data", data, "--output", "json"))
    assert shown["settings"]["hot_window_s"] == 3600 and shown["stored"] is True


def test_settings_set_refuses_an_open_store(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data):
        out = cli("settings", "set", "--data", data, "hot_window_s=60", code=1)
        assert "is open for writing by another process" in out
    assert stored(data)["hot_window_s"] == tael.Settings().hot_window_s


def test_rebuild_index_applies_new_payload_keys_to_stored_records(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data) as store:
        store.insert_spans([prompt_span("my.prompt", "an old question about tides")])
        store.flush()
        assert store.query_traces(text="tides") == []  # not a payload key yet
    out = cli("rebuild-index", "--data", data, "--payload-attribute", "my.prompt", "--payload-attribute", "a.b")
    assert "indexed" in out
    assert stored(data)["payload_attributes"] == ["my.prompt", "a.b"]
    with tael.Store(data) as store:
        assert store.settings.payload_attributes == ("my.prompt", "a.b")
        assert len(store.query_traces(text="tides")) == 1
    cli("rebuild-index", "--data", data, "--default-payload-attributes")
    assert tuple(stored(data)["payload_attributes"]) == tael.Settings().payload_attributes  # type: ignore[arg-type]


def test_a_directory_from_an_earlier_tael_gets_the_file_on_its_first_writable_open(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(retention_spans_days=3)):
        pass
    (data / "settings.json").unlink()  # as an earlier tael left it
    with tael.Store(data, read_only=True) as reader:
        assert reader.settings.retention_spans_days == 7  # nothing stored: the given (default) settings
    assert not (data / "settings.json").exists()  # a read-only open never writes
    with tael.Store(data, tael.Settings(retention_spans_days=4)):
        pass
    assert stored(data)["retention_spans_days"] == 4


def test_a_damaged_settings_file_fails_the_open_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data):
        pass
    (data / "settings.json").write_text('{"version": 1, "settings": {"hot_window_s": -5}}')
    with pytest.raises(tael.StorageError, match=r"settings\.json is damaged.*hot_window_s"):
        tael.Store(data)
    (data / "settings.json").write_text("{not json")
    with pytest.raises(tael.StorageError, match=r"settings\.json is damaged"):
        tael.Store(data, read_only=True)


def test_a_shorter_retention_at_open_is_refused_and_changes_only_by_settings_set(tmp_path: Path) -> None:
    # a one-off command run with a development config must not make every later server delete data
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(retention_spans_days=30)):
        pass
    with pytest.raises(tael.SettingsConflictError) as err:
        tael.Store(data, tael.Settings(retention_spans_days=1))
    assert "retention_spans_days" in str(err.value) and "tael settings set" in str(err.value)
    assert stored(data)["retention_spans_days"] == 30
    with tael.Store(data, tael.Settings(retention_spans_days=1), read_only=True) as reader:
        assert reader.settings.retention_spans_days == 1  # a reader deletes nothing
    with tael.Store(data, tael.Settings(retention_spans_days=60)) as store:  # longer: safe, stored
        assert store.settings.retention_spans_days == 60
    cli("settings", "set", "--data", data, "retention_spans_days=1")
    with tael.Store(data) as store:
        assert store.settings.retention_spans_days == 1


def test_bad_payload_keys_for_rebuild_index_leave_the_index_and_the_keys(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data, tael.Settings(payload_attributes=("my.prompt",))) as store:
        store.insert_spans([prompt_span("my.prompt", "the harbour pilot")])
    with pytest.raises(ValueError, match="payload_attributes"):
        tael.rebuild_index(data, payload_attributes=("",))
    assert stored(data)["payload_attributes"] == ["my.prompt"]
    assert (data / "index").exists()
    with tael.Store(data, read_only=True) as reader:
        assert len(reader.query_traces(text="harbour")) == 1
