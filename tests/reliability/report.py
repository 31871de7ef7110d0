"""``python -m tests.reliability.report``: the figures of the last reliability run
(``test-artifacts/reliability/*.json``, written by :func:`tests.reliability.figures.record`)
as a table in ``docs/reliability.md``, between its two marker comments."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.live import ROOT
from tests.reliability.figures import FIGURES_DIR

DOC = ROOT / "docs" / "reliability.md"
START = "<!-- reliability-figures:start -->"
END = "<!-- reliability-figures:end -->"


def flatten(figures: dict, prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``["a.b: 1", "c: [1, 2]"]``, in the file's order."""
    out = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += flatten(value, f"{name}.")
        else:
            out.append(f"{name}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    return out


def table(figures_dir: Path = FIGURES_DIR) -> str:
    rows = ["| test | run | figures |", "| --- | --- | --- |"]
    for path in sorted(figures_dir.glob("*.json")):
        try:
            figures = json.loads(path.read_text())
        except ValueError as exc:
            rows.append(f"| {path.stem} | ? | unreadable: {exc} |")
            continue
        run = figures.pop("run", "?")
        cell = "<br>".join(line.replace("|", "\\|") for line in flatten(figures))
        rows.append(f"| {path.stem} | {run} | {cell} |")
    return "\n".join(rows)


def rewrite(doc: Path = DOC, figures_dir: Path = FIGURES_DIR) -> None:
    """Replace what lies between the markers; the markers must be there, once each."""
    text = doc.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{doc} needs one {START} line before one {END} line")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    doc.write_text(f"{head}{START}\n{table(figures_dir)}\n{END}{tail}")


if __name__ == "__main__":
    rewrite()
    print(f"figures of {len(list(FIGURES_DIR.glob('*.json')))} tests written to {DOC.relative_to(ROOT)}", file=sys.stderr)
