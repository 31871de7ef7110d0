"""The lock and its exports agree with pyproject.toml, without the network.

``uv.lock`` pins every dependency; ``requirements/<name>.txt`` are its exports with hashes
(``dev`` for make and CI, one per image). ``make lock`` rewrites them all; these tests fail
when someone edits pyproject.toml's dependencies or the lock and forgets to. uv runs offline
with an empty cache of its own: the checks read only the checked-in files.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from uv import find_uv_bin

from services.table import SERVICES
from tests.lockfile import export_command, export_extras

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXPORTS = sorted((ROOT / "requirements").glob("*.txt"))
REGENERATE = "run `make lock` and commit uv.lock and requirements/"


def uv(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [find_uv_bin(), *args, "--offline", "--cache-dir", str(cache), "--python", sys.executable],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_agrees_with_pyproject(tmp_path):
    checked = uv("lock", "--check", cwd=ROOT, cache=tmp_path)
    assert checked.returncode == 0, f"uv.lock does not match pyproject.toml: {REGENERATE}\n{checked.stderr}"


def test_the_lock_check_catches_a_dependency_added_to_pyproject(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "uv.lock", project)
    text = (ROOT / "pyproject.toml").read_text()
    edited = text.replace("dev = [\n", 'dev = [\n    "six>=1.16",\n', 1)
    assert edited != text
    (project / "pyproject.toml").write_text(edited)
    assert uv("lock", "--check", cwd=project, cache=tmp_path / "cache").returncode != 0


@pytest.mark.parametrize("path", EXPORTS, ids=lambda p: p.name)
def test_each_export_is_what_uv_exports_from_the_lock_now(path, tmp_path):
    command = export_command(path)
    assert {"--frozen", "--no-emit-project", "--hashes"} <= set(command), "hashes, from the lock as it is, no project"
    output = command.index("--output-file")
    assert command[output + 1] == f"requirements/{path.name}", "make lock writes it from the repository root"
    exported = uv(*command[:output], *command[output + 2:], cwd=ROOT, cache=tmp_path)
    assert exported.returncode == 0, exported.stderr
    # the first two lines are the header, whose command names the output file
    assert exported.stdout.splitlines()[2:] == path.read_text().splitlines()[2:], f"{path.name} is stale: {REGENERATE}"


def test_one_export_per_image_and_dev_has_every_extra():
    assert {p.stem for p in EXPORTS} == {s.name for s in SERVICES} | {"dev"}
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    bundled = re.fullmatch(r"kryptobot-ml\[(.+)\]", PYPROJECT["project"]["optional-dependencies"]["all"][0])
    assert set(bundled.group(1).split(",")) == extras - {"all", "dev"}, "`all` must name every other extra but dev"
    assert export_extras(ROOT / "requirements" / "dev.txt") == {"all", "dev"}
    for path in EXPORTS:
        assert export_extras(path) <= extras


def test_every_dependency_pyproject_names_is_in_the_lock():
    """Read straight from the files, so it holds even where uv cannot run."""
    locked = {normalized(p["name"]) for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    project = PYPROJECT["project"]
    named = [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values() for r in reqs)]
    names = {normalized(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in named}
    assert names - locked == set(), f"not in uv.lock: {REGENERATE}"
