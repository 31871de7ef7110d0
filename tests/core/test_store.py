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


def test_signed_versions_are_served_and_tampered_or_unsigned_ones_refused(tmp_path):
    key = b"kept-off-the-model-volume"
    signed = ModelStore(tmp_path, "signal", signing_key=key)
    version = _commit(signed)
    assert signed.metadata(version)["signature"]["alg"] == "HMAC-SHA256"
    assert signed.verified_artifacts(version).is_dir()
    unsigned = _commit(ModelStore(tmp_path, "signal"))  # written by someone without the key
    with pytest.raises(IntegrityError, match="unsigned"):
        signed.verified_artifacts(unsigned)
    # a tampered artifact whose hash was rewritten to match still fails: the signature covers the hashes
    import hashlib
    import json

    path = tmp_path / "signal" / version
    (path / "artifacts" / "model.bin").write_bytes(b"evil")
    meta = json.loads((path / "metadata.json").read_text())
    meta["artifacts"]["model.bin"] = hashlib.sha256(b"evil").hexdigest()
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="wrongly signed"):
        signed.verified_artifacts(version)
    with pytest.raises(IntegrityError, match="wrongly signed"):
        ModelStore(tmp_path, "signal", signing_key=b"another key").verified_artifacts(unsigned.replace("v2", "v1"))


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"signal": 3}'])
def test_a_damaged_active_pointer_is_reported_not_a_crash(tmp_path, content):
    from kryptobot.store import CorruptPointer

    store = ModelStore(tmp_path, "signal")
    version = _commit(store)
    (store.dir / "active.json").write_text(content)
    with pytest.raises(CorruptPointer):
        store.active()
    store.set_active("signal", version)  # the repair path rewrites it
    assert store.active() == {"signal": version}


def test_unreadable_metadata_skips_the_version_and_stale_staging_is_removed(tmp_path):
    import os

    store = ModelStore(tmp_path, "signal")
    good, bad = _commit(store), _commit(store)
    (store.dir / bad / "metadata.json").write_text("")
    assert [m["version"] for m in store.versions()] == [good]
    with pytest.raises(IntegrityError):
        store.metadata(bad)
    stale, fresh = store.dir / ".staging-signal-old", store.dir / ".staging-signal-new"
    stale.mkdir(), fresh.mkdir()
    os.utime(stale, (0, 0))
    assert store.remove_stale_staging() == [stale.name] and fresh.exists()


def test_retention_keeps_the_newest_and_never_the_active_or_previous_version(tmp_path):
    store = ModelStore(tmp_path, "signal")
    versions = [_commit(store) for _ in range(6)]
    store.set_active("signal", versions[1])
    store.set_active("signal", versions[0])  # rolled back: v2 is now the previous one
    removed = store.prune(keep_last=2)
    assert removed == versions[2:4]  # v3, v4 go; v1 (active), v2 (previous), v5, v6 stay
    assert [m["version"] for m in store.versions()] == [versions[0], versions[1], versions[4], versions[5]]
    (store.dir / "active.json").write_text("{torn")
    assert store.prune(keep_last=1) == []  # while the pointer is unreadable nothing is deleted


def test_each_version_records_the_libraries_that_shape_its_results(tmp_path):
    from kryptobot.store import check_libraries

    store = ModelStore(tmp_path, "signal")
    recorded = store.metadata(_commit(store))["libraries"]
    assert "scikit-learn" in recorded and "numpy" in recorded
    assert check_libraries({"scikit-learn": "1.9.0"}, "signal-v1", {"scikit-learn": "1.9.1"}) == []  # a patch: same results
    assert check_libraries({"scikit-learn": "1.8.2"}, "signal-v1", {"scikit-learn": "1.9.1"}) == [
        "signal-v1 was built with scikit-learn 1.8.2, this service has 1.9.1"]
    with pytest.raises(IntegrityError, match="retrain it"):
        check_libraries({"keras": "2.15.0"}, "anomaly-v1", {"keras": "3.15.1"})
