"""The model store: versioned model directories with verified artifacts.

Layout::

    <root>/<service>/<version>/metadata.json
    <root>/<service>/<version>/artifacts/...   (hashed; loaded only when hashes match)
    <root>/<service>/<version>/reports/...     (PNG plots, JSON metrics)
    <root>/<service>/active.json               ({line: version}, replaced atomically)

A service has one or more *lines* (the forecast service has ``lstm`` and ``gru``; the
others one line named after the service). Version ids are ``<line>-v<n>``. A version is
written in a temporary directory and renamed into place, so a crash mid-write never
leaves a half-written version visible, and the active pointer only ever names a
complete version.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from kryptobot.errors import IntegrityError, InvalidInput, NotFound
from kryptobot.files import atomic_write_json

VERSION_RE = re.compile(r"^(?P<line>[a-z][a-z0-9_]*)-v(?P<n>\d+)$")
REPORT_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+\.(png|json)$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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

    def __init__(self, root: Path | str, service: str):
        self.service = service
        self.dir = Path(root) / service
        self.dir.mkdir(parents=True, exist_ok=True)

    # ---- writing -------------------------------------------------------------------
    @contextmanager
    def stage(self, line: str) -> Iterator[StagedVersion]:
        """Yield a temp directory for a new version of ``line``; discarded on error.

        Commit with :meth:`commit` inside the ``with`` block.
        """
        tmp = Path(tempfile.mkdtemp(prefix=f".staging-{line}-", dir=self.dir))
        try:
            yield StagedVersion(tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

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
            }
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
        pointers = self.active()
        pointers[line] = version
        atomic_write_json(self.dir / "active.json", pointers)

    # ---- reading -------------------------------------------------------------------
    def active(self) -> dict[str, str]:
        path = self.dir / "active.json"
        if not path.exists():
            return {}
        return json.loads(path.read_text())

    def versions(self, line: str | None = None) -> list[dict]:
        """Metadata of every committed version, oldest first."""
        out = []
        for path in self.dir.iterdir():
            match = VERSION_RE.match(path.name)
            if match and (line is None or match["line"] == line) and (path / "metadata.json").exists():
                out.append(json.loads((path / "metadata.json").read_text()))
        return sorted(out, key=lambda m: (m["line"], int(VERSION_RE.match(m["version"])["n"])))

    def version_dir(self, version: str) -> Path:
        if not VERSION_RE.match(version or ""):
            raise InvalidInput(f"malformed version {version!r}: expected <line>-v<number>", field="version")
        path = self.dir / version
        if not (path / "metadata.json").exists():
            raise NotFound(f"unknown version {version!r} of {self.service}", field="version")
        return path

    def metadata(self, version: str) -> dict:
        return json.loads((self.version_dir(version) / "metadata.json").read_text())

    def verified_artifacts(self, version: str) -> Path:
        """The artifacts directory, after checking every file against its recorded hash."""
        path = self.version_dir(version)
        meta = self.metadata(version)
        for name, expected in meta["artifacts"].items():
            file = path / "artifacts" / name
            if not file.is_file() or sha256_file(file) != expected:
                raise IntegrityError(f"artifact {name!r} of {version} does not match its sha256")
        return path / "artifacts"

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
