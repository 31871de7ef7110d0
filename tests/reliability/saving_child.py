"""A process that stops half-way through saving a version, to be SIGKILLed there:
``python -m tests.reliability.saving_child <models_dir> <flag file>``. It stages a tiny
version, writes its artifact, opens the temp file of an atomic pointer write (what
:func:`kryptobot.files.atomic_write_bytes` holds for a few microseconds), creates the flag
file and waits (at most a minute)."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from kryptobot.files import writer_tag
from kryptobot.store import ModelStore
from tests.framework.tiny_runtime import TinyModel


class HalfSaved(TinyModel):
    def __init__(self, flag: Path):
        super().__init__([1.0, -1.0], 0.0, {}, {})
        self.flag = flag

    def save(self, artifacts: Path, reports: Path) -> None:
        super().save(artifacts, reports)
        store_dir = artifacts.parent.parent
        tempfile.mkstemp(prefix=f".active.json.{writer_tag()}.", dir=store_dir)
        self.flag.touch()
        time.sleep(60)


if __name__ == "__main__":
    ModelStore(sys.argv[1], "tiny").save(HalfSaved(Path(sys.argv[2])))
