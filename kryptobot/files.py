"""Small file and clock helpers every layer shares: atomic writes and UTC timestamps."""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def utc_now() -> str:
    """Now, as the ISO-8601 UTC timestamp every record (jobs, versions, orders) carries."""
    return datetime.now(timezone.utc).isoformat()


def writer_tag() -> str:
    """``~<host>-<pid>~``: names a temp file or directory after the process writing it, so
    a restarted service can tell one its dead writer abandoned (:func:`writer_gone`)."""
    return f"~{socket.gethostname()}-{os.getpid()}~"


_WRITER_RE = re.compile(r"~(?P<host>[^~]+)-(?P<pid>\d+)~")


def writer_gone(name: str) -> bool:
    """Whether ``name`` carries a :func:`writer_tag` of this host whose process no longer
    runs (False when it cannot tell: another host's, or a name without a tag)."""
    match = _WRITER_RE.search(name)
    if not match or match["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a uniquely named temp file in the same directory, fsync, then rename over
    ``path``: a reader sees the old file or the new one, never half of one, and concurrent
    writers of one path each write their own temp file."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write_text` for binary content (a Parquet file, say)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{writer_tag()}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))
