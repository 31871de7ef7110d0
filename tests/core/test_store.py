"""The model store: atomic versions, verified artifacts, atomic active pointer."""
from __future__ import annotations

import pytest

from kryptobot.errors import IntegrityError, InvalidInput, NotFound
from kryptobot.store import ModelStore


def _commit(store: ModelStore, line: str = "signal", payload: bytes = b"model") -> str:
    with store.stage(line) as staged:
        (staged.artifacts / "model.bin").write_bytes(payload)
        (staged.reports / "training_results.json").write_text("{}")
        return store.commit(staged, line, {"params": {"x": 1}})


def test_versions_are_numbered_per_line_and_listed(tmp_path):
    store = ModelStore(tmp_path, "forecast")
    assert [_commit(store, "lstm"), _commit(store, "lstm"), _commit(store, "gru")] == ["lstm-v1", "lstm-v2", "gru-v1"]
    assert [m["version"] for m in store.versions("lstm")] == ["lstm-v1", "lstm-v2"]
    meta = store.metadata("lstm-v2")
    assert meta["line"] == "lstm" and meta["params"] == {"x": 1} and meta["created_at"]
    assert meta["reports"] == ["training_results.json"]


def test_failed_staging_leaves_nothing(tmp_path):
    store = ModelStore(tmp_path, "signal")
    with pytest.raises(RuntimeError):
        with store.stage("signal") as staged:
            (staged.artifacts / "model.bin").write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert store.versions() == []
    assert [p.name for p in store.dir.iterdir()] == []


def test_active_pointer(tmp_path):
    store = ModelStore(tmp_path, "signal")
    v1, v2 = _commit(store), _commit(store)
    store.set_active("signal", v1)
    store.set_active("signal", v2)
    assert store.active() == {"signal": v2}
    with pytest.raises(NotFound):
        store.set_active("signal", "signal-v9")
    assert store.active() == {"signal": v2}


def test_tampered_artifact_is_refused(tmp_path):
    store = ModelStore(tmp_path, "signal")
    version = _commit(store)
    assert store.verified_artifacts(version).is_dir()
    (store.dir / version / "artifacts" / "model.bin").write_bytes(b"evil")
    with pytest.raises(IntegrityError):
        store.verified_artifacts(version)


def test_bad_names(tmp_path):
    store = ModelStore(tmp_path, "signal")
    version = _commit(store)
    with pytest.raises(InvalidInput):
        store.version_dir("../etc")
    with pytest.raises(InvalidInput):
        store.report_path(version, "../../metadata.json")
    with pytest.raises(NotFound):
        store.report_path(version, "missing.png")
    assert store.report_path(version, "training_results.json").is_file()
