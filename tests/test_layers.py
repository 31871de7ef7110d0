"""The layer rules: ``lint-imports`` over the contracts in pyproject.toml, proof that it
catches a forbidden import, and the wire schemas importable without scikit-learn or TensorFlow."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
#: the trader parses every model-service answer with these
WIRE_SCHEMAS = [
    "kryptobot.models.signal.schemas",
    "kryptobot.models.ensemble.schemas",
    "kryptobot.models.anomaly.schemas",
    "kryptobot.models.forecast.schemas",
    "kryptobot.schemas",
    "services.framework.schemas",
]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """Run the check on the packages under ``cwd``; wide columns keep each contract on one line."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_layer_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout


#: (file, the import appended to it, the contract it breaks, the link the report names)
VIOLATIONS = [
    (
        "kryptobot/features.py",
        "import services.trader.app",
        "The core library never imports the services",
        "kryptobot.features -> services.trader.app",
    ),
    (
        "kryptobot/models/forecast/runtime.py",
        "from kryptobot.models.signal import runtime",
        "Model packages are independent of each other",
        "kryptobot.models.forecast.runtime -> kryptobot.models.signal.runtime",
    ),
    (
        "services/framework/routes.py",
        "from kryptobot.models.signal import schemas",
        "The web framework reaches model code only through kryptobot.runtime",
        "services.framework.routes -> kryptobot.models.signal.schemas",
    ),
    (
        "kryptobot/models/ensemble/schemas.py",
        "from kryptobot.models.ensemble import model",
        "Wire schemas import no model code",
        "kryptobot.models.ensemble.schemas -> kryptobot.models.ensemble.model",
    ),
]


@pytest.mark.parametrize(
    ("module", "line", "contract", "link"),
    VIOLATIONS,
    ids=["core->services", "model->model", "framework->model", "schemas->model-code"],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract, link):
    for package in ("kryptobot", "services"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a") as fh:
        fh.write(f"\n{line}  # a layer violation\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if re.search(r" BROKEN( \(|$)", ln)]
    assert any(ln.startswith(contract) for ln in broken), result.stdout
    assert link in result.stdout, result.stdout


def test_wire_schemas_import_without_sklearn_or_tensorflow():
    # a None entry in sys.modules makes any import of that package raise ImportError
    code = "\n".join(
        [
            "import importlib, sys",
            "sys.modules['sklearn'] = None",
            "sys.modules['tensorflow'] = None",
            f"for name in {WIRE_SCHEMAS!r}:",
            "    importlib.import_module(name)",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
