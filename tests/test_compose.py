"""docker-compose.yml and the five Dockerfiles, checked as files (no Docker engine needed).

They cannot be built here, so everything a build or ``docker compose up`` would trip on
that can be read from the files is checked: paths, ports, health checks, users, the export
of the lock each installs and its extras (only the anomaly and forecast images may carry
TensorFlow), and that every ``KRYPTOBOT_*`` variable they set is one the code reads.
"""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from kryptobot.settings import SETTINGS_FILES, Settings
from services.table import MODEL_SERVICES, SERVICES as TABLE
from tests.lockfile import export_extras

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PORTS = {s.name: s.port() for s in TABLE}  # the service table's: compose must match it
TF_SERVICES = {s.name for s in TABLE if s.tensorflow}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def dockerfile_of(name: str) -> Path:
    build = SERVICES[name]["build"]
    return ROOT / build["context"] / build["dockerfile"]


def args_of(dockerfile: Path, instruction: str) -> list[str]:
    return [args for ins, args in instructions(dockerfile) if ins == instruction]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec form (JSON list), not a shell string: {args}"
    return yaml.safe_load(args)


def installed_export(dockerfile: Path) -> Path:
    """The one export of the lock the image installs, every hash checked (``make lock`` writes it)."""
    installs = [cmd for run in args_of(dockerfile, "RUN") for cmd in re.findall(r"pip install [^&]*", run)]
    assert installs and all("--require-hashes" in cmd for cmd in installs), f"{dockerfile}: pip installs only from the lock"
    exports = [e for cmd in installs for e in re.findall(r"-r (requirements/[a-z0-9_-]+\.txt)", cmd)]
    assert len(exports) == 1, f"{dockerfile} installs {exports}"
    return ROOT / exports[0]


def pip_extras(dockerfile: Path) -> set[str]:
    return export_extras(installed_export(dockerfile))


def requirements(extras: set[str]) -> list[str]:
    """Everything installing ``.[extras]`` pulls in from pyproject.toml (self-references expanded)."""
    reqs, todo, seen = list(PYPROJECT["project"]["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in EXTRAS[extra]:
            nested = re.fullmatch(r"kryptobot-ml\[(.+)\]", req)
            todo.extend(nested.group(1).split(",")) if nested else reqs.append(req)
    return reqs


def test_the_five_services_and_redis_are_there():
    assert set(PORTS) | {"redis"} <= set(SERVICES)
    assert set(PORTS) == set(SERVICES) - {"redis", "bootstrap"}, "compose and the service table list other services"


@pytest.mark.parametrize("name", sorted(n for n in SERVICES if "build" in SERVICES[n]))
def test_build_context_and_dockerfile_exist(name):
    build = SERVICES[name]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT, "images are built from the repository root"
    assert dockerfile_of(name).is_file()


@pytest.mark.parametrize("name", PORTS)
def test_each_service_has_its_own_dockerfile(name):
    assert dockerfile_of(name) == ROOT / "services" / name / "Dockerfile"


@pytest.mark.parametrize("name", PORTS)
def test_published_on_loopback_only_and_the_command_serves_the_table_row(name):
    port = PORTS[name]
    assert SERVICES[name]["ports"] == [f"127.0.0.1:{port}:{port}"], "publish on 127.0.0.1 unless the operator says otherwise"
    dockerfile = dockerfile_of(name)
    assert args_of(dockerfile, "EXPOSE") == [str(port)]
    (cmd,) = args_of(dockerfile, "CMD")
    assert exec_form(cmd) == ["python", "-m", "services.serve", name]  # port and app from services/table.py
    assert "KRYPTOBOT_HOST=0.0.0.0" in args_of(dockerfile, "ENV")
    # all interfaces inside the container: allowed only because compose says so explicitly
    assert SERVICES[name]["environment"]["KRYPTOBOT_ALLOW_OPEN"] == "${KRYPTOBOT_ALLOW_OPEN:-1}"
    assert "KRYPTOBOT_API_KEY" in SERVICES[name]["environment"]
    assert (ROOT / "services" / name / "app.py").is_file()


@pytest.mark.parametrize("name", PORTS)
def test_health_check_asks_readiness_with_python(name):
    dockerfile = dockerfile_of(name)
    (check,) = args_of(dockerfile, "HEALTHCHECK")
    assert "curl" not in check and "wget" not in check, "the slim image has neither"
    argv = exec_form(check[check.index("CMD") + 3:].strip())
    assert argv[:2] == ["python", "-c"] and "urllib.request" in argv[2]
    assert f"http://127.0.0.1:{PORTS[name]}/health/ready" in argv[2]


def test_every_long_running_service_has_a_health_check():
    for name, service in SERVICES.items():
        if service.get("restart") == "no":  # the one-shot bootstrap
            continue
        in_compose = "test" in service.get("healthcheck", {})
        in_image = "build" in service and args_of(dockerfile_of(name), "HEALTHCHECK")
        assert in_compose or in_image, name


@pytest.mark.parametrize("name", PORTS)
def test_slim_python_311_base_and_non_root_user(name):
    ins = instructions(dockerfile_of(name))
    assert [a for i, a in ins if i == "FROM"] == ["python:3.11-slim"]
    users = [(k, a) for k, (i, a) in enumerate(ins) if i == "USER"]
    assert users, "no USER: the service would run as root"
    last_index, user = users[-1]
    assert user.split(":")[0] not in ("root", "0")
    assert last_index < next(k for k, (i, _) in enumerate(ins) if i == "CMD")


@pytest.mark.parametrize("name", PORTS)
def test_pip_extras_exist_and_only_anomaly_and_forecast_get_tensorflow(name):
    dockerfile = dockerfile_of(name)
    assert installed_export(dockerfile) == ROOT / "requirements" / f"{name}.txt"
    extras = pip_extras(dockerfile)
    assert extras and "serve" in extras
    # what the lock resolved for the image, dependencies of dependencies included
    assert ("tensorflow" in installed_export(dockerfile).read_text()) == (name in TF_SERVICES)
    assert extras <= set(EXTRAS), f"unknown extras {extras - set(EXTRAS)}"
    tf_reqs = [r for r in requirements(extras) if r.lower().startswith("tensorflow")]
    if name in TF_SERVICES:
        assert "tf" in extras and tf_reqs
    else:
        assert not tf_reqs, f"{name} would install {tf_reqs}"
        assert not any("tensorflow" in args.lower() for _, args in instructions(dockerfile))
    expected = {"signal": "onnx", "ensemble": "onnx", "trader": "trader"}.get(name, "tf")
    assert expected in extras


@pytest.mark.parametrize("name", PORTS)
def test_images_carry_the_code_and_the_config(name):
    copied = [src for a in args_of(dockerfile_of(name), "COPY") for src in shlex.split(a)[:-1]]
    for path in (f"requirements/{name}.txt", "kryptobot", "config", f"services/{name}", "services/framework", "services/serve.py", "services/table.py"):
        assert path in copied, f"{name} does not COPY {path}"
        assert (ROOT / path).exists()


def test_model_services_share_the_models_volume():
    for name in MODEL_SERVICES:
        service = SERVICES[name]
        assert service["environment"]["KRYPTOBOT_MODELS_DIR"] == "/data/models"
        assert "models:/data/models" in service["volumes"], name
        assert any(v.endswith(":/app/config:ro") for v in service["volumes"]), "config is mounted read-only"
    assert "models" in COMPOSE["volumes"]


def test_trader_wiring():
    trader = SERVICES["trader"]
    env = trader["environment"]
    assert env["KRYPTOBOT_REDIS_URL"] == REDIS_URL
    for name in MODEL_SERVICES:
        assert env[f"KRYPTOBOT_{name.upper()}_URL"] == f"http://{name}:{PORTS[name]}"
        assert name in trader["depends_on"]
    assert trader["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "test" in SERVICES["redis"]["healthcheck"]
    ledger_dir = str(Path(env["KRYPTOBOT_LEDGER_PATH"]).parent)
    volume, _, target = next(v for v in trader["volumes"] if not v.startswith("./")).partition(":")
    assert target == ledger_dir and volume in COMPOSE["volumes"], "the ledger must be on a named volume"


#: the password compose requires (``:?``: no start without it), as every service's URL carries it
REDIS_PASSWORD = "${REDIS_PASSWORD:?set REDIS_PASSWORD, see docker-compose.yml}"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis:6379/0"


def test_redis_requires_a_password_every_service_has():
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == REDIS_PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == REDIS_PASSWORD, "the health check's redis-cli must authenticate"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis, "Redis stays inside the compose network"
    for name in list(PORTS):  # the trader (cache, leader lease) and the model services (replication)
        assert SERVICES[name]["environment"]["KRYPTOBOT_REDIS_URL"] == REDIS_URL, name
    # the password's name is not a KRYPTOBOT_ setting: only the URLs built from it reach the code
    assert not re.search(r"KRYPTOBOT_REDIS_PASSWORD", (ROOT / "docker-compose.yml").read_text())


def test_bootstrap_trains_the_model_services_once():
    boot = SERVICES["bootstrap"]
    assert boot["restart"] == "no"
    assert boot["command"][:3] == ["python", "-m", "services.bootstrap"]
    assert set(MODEL_SERVICES) <= set(boot["depends_on"])
    for name in MODEL_SERVICES:
        assert boot["environment"][f"KRYPTOBOT_{name.upper()}_URL"] == f"http://{name}:{PORTS[name]}"
    assert "COPY services/bootstrap.py ./services/" in (ROOT / boot["build"]["dockerfile"]).read_text()


def _known_variables() -> set[str]:
    fields = set(Settings.model_fields)
    try:
        from services.trader.settings import TraderEnv
        from kryptobot.trading.settings import TraderSettings

        fields |= set(TraderEnv.model_fields)
        files = {**{f: m for m, f in SETTINGS_FILES.items()}, "trader_settings.json": TraderSettings}
    except ImportError:  # the trader is optional in the stack
        files = {f: m for m, f in SETTINGS_FILES.items()}
    known = {f"KRYPTOBOT_{f.upper()}" for f in fields}
    for filename, model in files.items():  # KRYPTOBOT_<FILE>__<KEY> overrides, see kryptobot.settings
        known |= {f"KRYPTOBOT_{Path(filename).stem.upper()}__{k.upper()}" for k in model.model_fields}
    return known


def test_every_kryptobot_variable_is_read_by_the_code():
    used = set(re.findall(r"\bKRYPTOBOT_[A-Z0-9_]+", (ROOT / "docker-compose.yml").read_text()))
    for name in PORTS:
        used |= set(re.findall(r"\bKRYPTOBOT_[A-Z0-9_]+", dockerfile_of(name).read_text()))
    assert used, "the compose file sets no KRYPTOBOT_ variable?"
    assert used <= _known_variables(), f"not settings of the code: {sorted(used - _known_variables())}"


def test_dockerignore_keeps_local_state_out_but_not_the_code():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "var", "models"} <= ignored
    assert not ignored & {"kryptobot", "services", "config", "requirements"}
