"""The model store: versioned model directories with verified artifacts.

Layout::

    <root>/<service>/<version>/metadata.json
    <root>/<service>/<version>/artifacts/...   (hashed; loaded only when hashes match)
    <root>/<service>/<version>/reports/...     (PNG plots, JSON metrics)
    <root>/<service>/<version>/promotion.json  (the promotion gate's verdict, written after training)
    <root>/<service>/active.json               ({line: version}, replaced atomically)

A service has one or more *lines* (the forecast service has ``lstm`` and ``gru``; the
others one line named after the service). Version ids are ``<line>-v<n>``. A version is
written in a temporary directory and renamed into place, so a crash mid-write never
leaves a half-written version visible, and the active pointer only ever names a
complete version.

A sha256 per artifact proves a version is whole, not who wrote it. With a signing key
(``KRYPTOBOT_SIGNING_KEY``, kept off the model volume) every committed version's metadata,
artifact hashes included, carries an HMAC-SHA256, and artifacts of an unsigned or wrongly
signed version are refused. A damaged ``active.json`` or ``metadata.json`` is reported,
never a crash: the service falls back (see ``services/framework/registry.py``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from kryptobot.errors import IntegrityError, InvalidInput, NotFound
from kryptobot.files import atomic_write_json, writer_tag, writer_gone

log = logging.getLogger("kryptobot.store")
SIGNATURE_ALG = "HMAC-SHA256"
STALE_STAGING_SECONDS = 3600  # a training child may still be writing a younger one

VERSION_RE = re.compile(r"^(?P<line>[a-z][a-z0-9_]*)-v(?P<n>\d+)$")
REPORT_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+\.(png|json)$")
PROMOTION_FILE = "promotion.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _signed_bytes(meta: dict) -> bytes:
    """The canonical bytes a version's signature covers: its metadata without the signature."""
    return json.dumps({k: v for k, v in meta.items() if k != "signature"}, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign(meta: dict, key: bytes) -> dict:
    return {"alg": SIGNATURE_ALG, "value": hmac.new(key, _signed_bytes(meta), hashlib.sha256).hexdigest()}


def signature_ok(meta: dict, key: bytes) -> bool:
    given = meta.get("signature") or {}
    return given.get("alg") == SIGNATURE_ALG and hmac.compare_digest(str(given.get("value", "")), sign(meta, key)["value"])


#: the libraries whose version can change what a stored model computes (recorded with each
#: version; a different major version refuses to load it, a different minor one warns)
RESULT_LIBRARIES = ("scikit-learn", "tensorflow-cpu", "keras", "ta-lib", "onnxruntime", "skl2onnx", "numpy")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in RESULT_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def check_libraries(recorded: dict[str, str], version: str, installed: dict[str, str] | None = None) -> list[str]:
    """Warnings for minor-version differences; IntegrityError for a major one (a library a
    version was built with and that is missing here is that version's loader's business)."""
    installed = library_versions() if installed is None else installed
    warnings = []
    for name, then in recorded.items():
        now = installed.get(name)
        if now is None or now == then:
            continue
        if then.split(".")[0] != now.split(".")[0]:
            raise IntegrityError(f"{version} was built with {name} {then}, this service has {now}: retrain it")
        if then.split(".")[:2] != now.split(".")[:2]:
            warnings.append(f"{version} was built with {name} {then}, this service has {now}")
    return warnings


class CorruptPointer(IntegrityError):
    """``active.json`` exists but cannot be read: the service must pick versions itself."""


class StagedVersion:
    """A version being written: fill ``artifacts`` and ``reports``, then the store commits it."""

    def __init__(self, path: Path):
        self.path = path
        self.artifacts = path / "artifacts"
        self.reports = path / "reports"
        self.artifacts.mkdir(parents=True)
        self.reports.mkdir(parents=True)


class ModelStore:
    """Versions of one service's models under ``<root>/<service>``."""

    def __init__(self, root: Path | str, service: str, signing_key: bytes | None = None):
        self.service = service
        self.dir = Path(root) / service
        self.dir.mkdir(parents=True, exist_ok=True)
        self.signing_key = signing_key or None

    # ---- writing -------------------------------------------------------------------
    @contextmanager
    def stage(self, line: str) -> Iterator[StagedVersion]:
        """Yield a temp directory for a new version of ``line``; discarded on error.

        Commit with :meth:`commit` inside the ``with`` block.
        """
        # named after its writer, so a restarted service can tell an abandoned one at once
        tmp = Path(tempfile.mkdtemp(prefix=f".staging-{line}-{writer_tag()}-", dir=self.dir))
        try:
            yield StagedVersion(tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def save(self, model) -> str:
        """Stage, save and commit a trained ``ModelVersion``; the new version's name."""
        with self.stage(model.line) as staged:
            model.save(staged.artifacts, staged.reports)
            return self.commit(staged, model.line, model.metadata())

    def commit(self, staged: StagedVersion, line: str, metadata: dict) -> str:
        """Hash the artifacts, write metadata.json and rename the version into place."""
        artifacts = {
            str(p.relative_to(staged.artifacts)): sha256_file(p)
            for p in sorted(staged.artifacts.rglob("*"))
            if p.is_file()
        }
        if not artifacts:
            raise IntegrityError("refusing to commit a version without artifacts")
        reports = sorted(p.name for p in staged.reports.iterdir() if p.is_file())
        while True:
            version = f"{line}-v{self._next_number(line)}"
            meta = {
                **metadata,
                "version": version,
                "line": line,
                "service": self.service,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "artifacts": artifacts,
                "reports": reports,
                "libraries": library_versions(),
            }
            if self.signing_key:
                meta["signature"] = sign(meta, self.signing_key)
            atomic_write_json(staged.path / "metadata.json", meta)
            try:
                os.rename(staged.path, self.dir / version)
                return version
            except OSError:
                if not (self.dir / version).exists():
                    raise
                # another writer took this number between listing and renaming: next one

    def set_active(self, line: str, version: str) -> None:
        self.metadata(version)  # must exist
        try:
            pointers = self.active()
        except CorruptPointer:
            pointers = {}  # being repaired: the caller activates every line again
        if pointers.get(line) not in (None, version):
            self._remember_previous(line, pointers[line])
        pointers[line] = version
        atomic_write_json(self.dir / "active.json", pointers)

    def _remember_previous(self, line: str, version: str) -> None:
        """The version a line served before the current one: retention keeps it for a rollback."""
        path = self.dir / "previous.json"
        try:
            previous = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            previous = {}
        atomic_write_json(path, {**(previous if isinstance(previous, dict) else {}), line: version})

    def protected(self) -> set[str]:
        """Versions retention never deletes: every line's active and previous one."""
        keep: set[str] = set()
        for name in ("active.json", "previous.json"):
            try:
                pointers = json.loads((self.dir / name).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(pointers, dict):
                keep |= {v for v in pointers.values() if isinstance(v, str)}
        return keep

    def prune(self, keep_last: int) -> list[str]:
        """Delete all but the newest ``keep_last`` versions of each line, never an active or a
        previous one (and nothing at all while the active pointer is unreadable)."""
        try:
            self.active()
        except CorruptPointer:
            return []
        protected, removed = self.protected(), []
        by_line: dict[str, list[str]] = {}
        for meta in self.versions():
            by_line.setdefault(meta["line"], []).append(meta["version"])
        for versions in by_line.values():
            for version in versions[: max(0, len(versions) - keep_last)]:
                if version not in protected:
                    shutil.rmtree(self.dir / version, ignore_errors=True)
                    removed.append(version)
        return removed

    # ---- reading -------------------------------------------------------------------
    def active(self) -> dict[str, str]:
        """``{line: version}``; {} when no pointer was ever written; CorruptPointer when the
        file is there but is not such a mapping (an empty file, a torn write on a full disk)."""
        path = self.dir / "active.json"
        if not path.exists():
            return {}
        try:
            pointers = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptPointer(f"{path} is unreadable: {exc}") from exc
        if not isinstance(pointers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pointers.items()):
            raise CorruptPointer(f"{path} is not a {{line: version}} mapping")
        return pointers

    def replace_active(self, pointers: dict[str, str]) -> None:
        """Rewrite the whole pointer (a repair after CorruptPointer)."""
        atomic_write_json(self.dir / "active.json", pointers)

    def versions(self, line: str | None = None) -> list[dict]:
        """Metadata of every committed version whose metadata reads, oldest first."""
        out = []
        for path in self.dir.iterdir():
            match = VERSION_RE.match(path.name)
            if match and (line is None or match["line"] == line) and (path / "metadata.json").exists():
                try:
                    out.append(json.loads((path / "metadata.json").read_text()))
                except (OSError, ValueError) as exc:
                    log.error("%s/metadata.json is unreadable, version skipped: %s", path.name, exc)
        return sorted(out, key=lambda m: (m["line"], int(VERSION_RE.match(m["version"])["n"])))

    def remove_stale_staging(self, older_than: float = STALE_STAGING_SECONDS) -> list[str]:
        """Staging directories left by a training process killed mid-save, and temp files of
        atomic writes (pointers, job records, promotion verdicts) left by any process killed
        mid-write: at once when their writer was a process of this host that is gone, else
        after ``older_than`` seconds (a replica elsewhere may still be writing one)."""
        removed = []
        places = [self.dir, self.dir / "jobs", *(p for p in self.dir.iterdir() if VERSION_RE.match(p.name))]
        for path in (p for place in places if place.is_dir() for p in place.glob(".*")):
            staging = path.name.startswith(".staging-") and path.is_dir()
            if not (staging or (path.is_file() and "~" in path.name)):
                continue
            if writer_gone(path.name) or time.time() - path.stat().st_mtime > older_than:
                if staging:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(self.dir)))
        return removed

    def version_dir(self, version: str) -> Path:
        if not VERSION_RE.match(version or ""):
            raise InvalidInput(f"malformed version {version!r}: expected <line>-v<number>", field="version")
        path = self.dir / version
        if not (path / "metadata.json").exists():
            raise NotFound(f"unknown version {version!r} of {self.service}", field="version")
        return path

    def metadata(self, version: str) -> dict:
        try:
            return json.loads((self.version_dir(version) / "metadata.json").read_text())
        except ValueError as exc:
            raise IntegrityError(f"{version}/metadata.json is unreadable: {exc}") from exc

    def verified_artifacts(self, version: str) -> Path:
        """The artifacts directory, after checking every file against its recorded hash."""
        path = self.version_dir(version)
        meta = self.metadata(version)
        if self.signing_key and not signature_ok(meta, self.signing_key):
            state = "unsigned" if "signature" not in meta else "wrongly signed"
            raise IntegrityError(f"{version} is {state}: refusing its artifacts (KRYPTOBOT_SIGNING_KEY is set)")
        for warning in check_libraries(meta.get("libraries") or {}, version):
            log.warning("%s; its results may differ slightly", warning)
        for name, expected in meta["artifacts"].items():
            file = path / "artifacts" / name
            if not file.is_file() or sha256_file(file) != expected:
                raise IntegrityError(f"artifact {name!r} of {version} does not match its sha256")
        return path / "artifacts"

    def set_promotion(self, version: str, record: dict) -> None:
        """Record the promotion gate's verdict beside ``version``: metadata.json (and its
        signature) stays as the training job committed it."""
        atomic_write_json(self.version_dir(version) / PROMOTION_FILE, record)

    def promotion(self, version: str) -> dict | None:
        """The verdict :meth:`set_promotion` recorded (None: none, e.g. a version from before the gate)."""
        path = self.version_dir(version) / PROMOTION_FILE
        try:
            return json.loads(path.read_text()) if path.exists() else None
        except (OSError, ValueError) as exc:
            log.error("%s is unreadable: %s", path, exc)
            return None

    def report_path(self, version: str, name: str) -> Path:
        if not REPORT_NAME_RE.match(name):
            raise InvalidInput(f"malformed report name {name!r}", field="name")
        path = self.version_dir(version) / "reports" / name
        if not path.is_file():
            raise NotFound(f"{version} has no report {name!r}", field="name")
        return path

    def _next_number(self, line: str) -> int:
        numbers = [
            int(m["n"]) for p in self.dir.iterdir() if (m := VERSION_RE.match(p.name)) and m["line"] == line
        ]
        return max(numbers, default=0) + 1
