"""The Kubernetes manifests (deploy/k8s), rendered by the real kustomize and checked as objects.

Both configurations, ``overlays/small`` and ``overlays/scaled``, are rendered with ``kubectl
kustomize`` (``make k8s-tools`` installs kubectl when it is missing) and every object is
validated against the Kubernetes API schemas (kubernetes-validate, strict: an unknown or
misplaced field is an error). The rest checks what a schema cannot: the service table's
names, ports and apps; probes, resources and a non-root, read-only security context on every
container; references that resolve (Secrets and their keys, the ConfigMap, claims, selectors,
autoscaler targets); what differs between the two configurations; and that every
``KRYPTOBOT_*`` variable is a setting of the code.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from services.table import BY_NAME, MODEL_SERVICES, SERVICES
from tests.test_compose import _known_variables

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
CONFIGURATIONS = ("small", "scaled")
#: the oldest release the manifests are for (autoscaling/v2, PDB unhealthyPodEvictionPolicy)
#: and the newest whose schemas kubernetes-validate ships
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
TF_SERVICES = {s.name for s in SERVICES if s.tensorflow}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
WORKLOADS = ("Deployment", "Job")


KUBECTL = os.environ.get("KUBECTL", "kubectl")  # another one: KUBECTL=/path/to/kubectl


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = shutil.which(KUBECTL)
    if found is None:  # a fresh machine: install it the way `make test` does
        try:
            done = subprocess.run(["make", "-s", "k8s-tools"], cwd=ROOT, capture_output=True, text=True, timeout=600)
            why = done.stderr.strip()[-500:] or f"it exited {done.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = repr(exc)
        found = shutil.which(KUBECTL)
        if found is None:
            pytest.fail(f"no {KUBECTL} to render the manifests, and `make k8s-tools` did not install it ({why})")
    return found


def secret_keys(configuration: str) -> list[str]:
    """The keys an operator puts in the overlay's secrets.env (its committed example)."""
    example = K8S / "overlays" / configuration / "secrets.env.example"
    lines = [line.strip() for line in example.read_text().splitlines()]
    return [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]


@pytest.fixture(scope="session")
def rendered(kubectl, tmp_path_factory) -> dict[str, list[dict]]:
    """Each configuration's objects, rendered from a copy of the tree: the overlays'
    secrets.env are the operator's (never committed), so the copy gets test values."""
    tree = tmp_path_factory.mktemp("k8s")
    shutil.copytree(ROOT / "config", tree / "config")
    shutil.copytree(K8S, tree / "deploy" / "k8s", ignore=shutil.ignore_patterns("secrets.env"))
    out = {}
    for configuration in CONFIGURATIONS:
        overlay = tree / "deploy" / "k8s" / "overlays" / configuration
        (overlay / "secrets.env").write_text("".join(f"{k}=test-{k}\n" for k in secret_keys(configuration)))
        done = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"kubectl kustomize {configuration}: {done.stderr}"
        out[configuration] = [o for o in yaml.safe_load_all(done.stdout) if o]
    return out


@pytest.fixture(params=CONFIGURATIONS)
def configuration(request) -> str:
    return request.param


@pytest.fixture
def objects(rendered, configuration) -> list[dict]:
    return rendered[configuration]


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def generated(objects: list[dict], kind: str, name: str) -> dict:
    """The ConfigMap or Secret a generator made (its name carries a hash suffix)."""
    (found,) = [o for n, o in of_kind(objects, kind).items() if re.fullmatch(rf"{name}-[a-z0-9]{{10}}", n)]
    return found


def pods(objects: list[dict]) -> dict[str, dict]:
    """Pod spec of each workload, by workload name."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] in WORKLOADS}


def containers(objects: list[dict]) -> list[tuple[str, dict, dict]]:
    """(workload name, pod spec, container) of every container, init containers included."""
    return [
        (name, pod, c)
        for name, pod in pods(objects).items()
        for c in pod.get("initContainers", []) + pod["containers"]
    ]


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def main_container(objects: list[dict], name: str) -> dict:
    (container,) = pods(objects)[name]["containers"]
    return container


def mounts(pod: dict, container: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


_UNITS = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30}


def quantity(value) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * _UNITS[unit]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- the schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(objects, version):
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


def test_the_rendering_is_not_empty_and_in_one_namespace(objects):
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service", "Job", "ConfigMap", "Secret", "PersistentVolumeClaim", "PodDisruptionBudget"} <= kinds
    (namespace,) = of_kind(objects, "Namespace")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {namespace}


# --- the service table ---------------------------------------------------------------------


def test_each_service_of_the_table_is_a_deployment_and_a_service(objects):
    deployments, services = of_kind(objects, "Deployment"), of_kind(objects, "Service")
    assert set(deployments) == set(BY_NAME) | {"redis"}, "the Deployments and services/table.py disagree"
    for spec in SERVICES:
        container = main_container(objects, spec.name)
        assert container["image"] == COMPOSE[spec.name]["image"] == f"kryptobot/{spec.name}:latest"
        (port,) = container["ports"]
        assert port == {"name": "http", "containerPort": spec.port()}
        argv = container["command"]
        assert argv[:3] == ["python", "-m", "uvicorn"] and spec.app in argv and "--factory" in argv
        assert argv[argv.index("--port") + 1] == str(spec.port()) and argv[argv.index("--host") + 1] == "0.0.0.0"
        assert services[spec.name]["spec"]["ports"] == [{"name": "http", "port": spec.port(), "targetPort": "http"}]


def test_the_trader_calls_the_model_services_through_their_services(objects):
    services, trader = of_kind(objects, "Service"), env(main_container(objects, "trader"))
    for name in MODEL_SERVICES:
        spec = BY_NAME[name]
        assert trader[spec.url_env]["value"] == f"http://{name}:{spec.port()}"
        assert not services[name]["spec"].get("publishNotReadyAddresses"), "the trader must reach ready pods only"
    assert re.fullmatch(r"redis://:\$\(REDIS_PASSWORD\)@redis:6379/0", trader["KRYPTOBOT_REDIS_URL"]["value"])
    names = list(trader)  # $(VAR) expands only variables defined before it
    assert names.index("REDIS_PASSWORD") < names.index("KRYPTOBOT_REDIS_URL")


def test_the_bootstrap_job_trains_through_services_that_reach_unready_pods(objects):
    (job,) = of_kind(objects, "Job").values()
    assert job["metadata"]["name"] == "bootstrap"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    container = main_container(objects, "bootstrap")
    assert container["command"] == COMPOSE["bootstrap"]["command"] == ["python", "-m", "services.bootstrap"]
    assert container["image"] == COMPOSE["bootstrap"]["image"]
    variables, services = env(container), of_kind(objects, "Service")
    deployments = of_kind(objects, "Deployment")
    for name in MODEL_SERVICES:
        spec = BY_NAME[name]
        assert variables[spec.url_env]["value"] == f"http://{name}-bootstrap:{spec.port()}"
        service = services[f"{name}-bootstrap"]["spec"]
        # a service without a model is not ready, and training is what makes it ready
        assert service["publishNotReadyAddresses"] is True
        assert service["sessionAffinity"] == "ClientIP", "its job-status polls must reach the pod training"
        assert service["ports"] == [{"name": "http", "port": spec.port(), "targetPort": "http"}]
        assert selects(service["selector"], deployments[name]["spec"]["template"]["metadata"]["labels"])
    assert "secretKeyRef" in variables["KRYPTOBOT_API_KEY"]["valueFrom"]


# --- every container -----------------------------------------------------------------------


def test_long_running_containers_have_readiness_and_liveness_probes(objects):
    for workload, _, container in containers(objects):
        if workload not in of_kind(objects, "Deployment"):
            continue  # the Job runs to completion: nothing to probe
        assert "readinessProbe" in container and "livenessProbe" in container, workload
        if workload in BY_NAME:  # the project's own: its health routes on its named port
            assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
            assert container["startupProbe"]["httpGet"]["path"] == "/health/live", "slow imports are not a dead process"


def test_every_container_has_requests_and_limits(objects):
    for workload, _, container in containers(objects):
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request, limit = resources.get("requests", {}).get(resource), resources.get("limits", {}).get(resource)
            assert request and limit, f"{workload}: no {resource} request or limit"
            assert quantity(request) <= quantity(limit), f"{workload}: {resource} request above its limit"


def test_tensorflow_services_are_sized_apart(objects):
    def memory(name: str, which: str) -> float:
        return quantity(main_container(objects, name)["resources"][which]["memory"])

    others = set(MODEL_SERVICES) - TF_SERVICES
    assert TF_SERVICES and others
    for which in ("requests", "limits"):
        assert min(memory(n, which) for n in TF_SERVICES) > max(memory(n, which) for n in others), which
    for name in TF_SERVICES:  # TensorFlow's thread pools as wide as the CPU it may use
        threads = env(main_container(objects, name))["KRYPTOBOT_TF_THREADS"]["value"]
        assert int(threads) == quantity(main_container(objects, name)["resources"]["limits"]["cpu"])


def test_every_container_runs_as_non_root_read_only_without_capabilities(objects):
    (namespace,) = of_kind(objects, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload, pod, container in containers(objects):
        pod_context, context = pod.get("securityContext", {}), container.get("securityContext", {})
        assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, workload
        assert context.get("runAsUser", pod_context.get("runAsUser", 1)) != 0, workload
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", workload
        assert context.get("allowPrivilegeEscalation") is False, workload
        assert context.get("capabilities", {}).get("drop") == ["ALL"] and not context["capabilities"].get("add"), workload
        assert context.get("readOnlyRootFilesystem") is True, workload
        assert pod.get("automountServiceAccountToken") is False, f"{workload} never talks to the API server"
        if container["image"].startswith("kryptobot/"):
            assert "emptyDir" in mounts(pod, container).get("/tmp", {}), f"{workload}: no writable /tmp"
            assert env(container)["HOME"]["value"].startswith("/tmp"), f"{workload}: HOME on the read-only root"


def test_the_project_containers_run_as_the_images_user(objects):
    for workload, pod, container in containers(objects):
        if container["image"].startswith("kryptobot/"):
            assert pod["securityContext"]["runAsUser"] == 10001, "useradd --uid 10001 in every Dockerfile"


# --- volumes, config, secrets, selectors ---------------------------------------------------


def test_model_services_share_one_read_write_many_model_volume(objects):
    claims = of_kind(objects, "PersistentVolumeClaim")
    assert claims["models"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in MODEL_SERVICES:
        pod, container = pods(objects)[name], main_container(objects, name)
        assert env(container)["KRYPTOBOT_MODELS_DIR"]["value"] == "/data/models"
        assert mounts(pod, container)["/data/models"]["persistentVolumeClaim"]["claimName"] == "models"
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], "the volume must be writable"


def test_the_ledger_lives_on_the_traders_volume(objects):
    pod, container = pods(objects)["trader"], main_container(objects, "trader")
    variables = env(container)
    for variable in ("KRYPTOBOT_LEDGER_PATH", "KRYPTOBOT_REPORTS_DIR"):
        path = Path(variables[variable]["value"])
        volume = next(v for m, v in mounts(pod, container).items() if path.is_relative_to(m))
        assert volume["persistentVolumeClaim"]["claimName"] == "trader-data", variable


def test_the_config_map_is_every_settings_file_mounted_at_app_config(objects):
    config = generated(objects, "ConfigMap", "kryptobot-config")
    files = {p.name: p.read_text() for p in (ROOT / "config").glob("*.json")}
    assert config["data"] == files, "config/kustomization.yaml must list every config/*.json"
    for workload, pod, container in containers(objects):
        if workload in BY_NAME:
            volume = mounts(pod, container)["/app/config"]
            assert volume["configMap"]["name"] == config["metadata"]["name"]
            assert next(m for m in container["volumeMounts"] if m["mountPath"] == "/app/config")["readOnly"] is True
            assert env(container)["KRYPTOBOT_CONFIG_DIR"]["value"] == "/app/config"


def test_api_and_signing_keys_come_from_the_generated_secret(objects):
    secret = generated(objects, "Secret", "kryptobot-secrets")
    for name in MODEL_SERVICES:
        variables = env(main_container(objects, name))
        for variable, key in (("KRYPTOBOT_API_KEY", "api-key"), ("KRYPTOBOT_SIGNING_KEY", "signing-key")):
            ref = variables[variable]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], key), f"{name} {variable}"
            assert "value" not in variables[variable]


def test_every_reference_resolves(objects):
    secrets = {n: o.get("data", {}) for n, o in of_kind(objects, "Secret").items()}
    config_maps, claims = of_kind(objects, "ConfigMap"), of_kind(objects, "PersistentVolumeClaim")
    for workload, pod, container in containers(objects):
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:  # the generator's hashed name: kustomize rewrote the reference
                assert ref["key"] in secrets.get(ref["name"], {}), f"{workload} {entry['name']}: no Secret {ref}"
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, f"{workload}: {volume}"
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{workload}: {volume}"
        names = [m["name"] for m in container.get("volumeMounts", [])]
        assert set(names) <= {v["name"] for v in pod.get("volumes", [])}, workload
    templates = {n: o["spec"]["template"] for n, o in of_kind(objects, "Deployment").items()}
    for name, service in of_kind(objects, "Service").items():
        targets = [n for n, t in templates.items() if selects(service["spec"]["selector"], t["metadata"]["labels"])]
        assert len(targets) == 1, f"Service {name} selects {targets}"
        ports = {p["name"] for c in templates[targets[0]]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name
    for name, deployment in of_kind(objects, "Deployment").items():
        assert selects(deployment["spec"]["selector"]["matchLabels"], templates[name]["metadata"]["labels"]), name
    for name, budget in of_kind(objects, "PodDisruptionBudget").items():
        targets = [n for n, t in templates.items() if selects(budget["spec"]["selector"]["matchLabels"], t["metadata"]["labels"])]
        assert targets == [name], f"PodDisruptionBudget {name} selects {targets}"
    for name, scaler in of_kind(objects, "HorizontalPodAutoscaler").items():
        target = scaler["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in templates, name


def test_the_model_services_have_one_shape(objects):
    """Each model service's pod is the others' with its own name, port and sizes (the four
    files are kept in step by hand: this is what keeps them in step)."""
    def shape(name: str) -> str:
        pod = json.loads(json.dumps(pods(objects)[name]))
        (container,) = pod["containers"]
        container.pop("resources")
        container["env"] = [e for e in container["env"] if e["name"] != "KRYPTOBOT_TF_THREADS"]
        return json.dumps(pod, sort_keys=True).replace(name, "NAME").replace(str(BY_NAME[name].port()), "PORT")

    shapes = {name: shape(name) for name in MODEL_SERVICES}
    assert len(set(shapes.values())) == 1, "the model services' pods differ in more than name, port and sizes"


def test_every_kryptobot_variable_is_a_setting_of_the_code(objects):
    used = {e["name"] for _, _, c in containers(objects) for e in c.get("env", []) if e["name"].startswith("KRYPTOBOT_")}
    assert used
    unknown = used - _known_variables()
    assert not unknown, f"not settings of the code: {sorted(unknown)}"


# --- the two configurations ----------------------------------------------------------------


def test_small_runs_one_replica_of_everything_on_sqlite(rendered):
    objects = rendered["small"]
    for name, deployment in of_kind(objects, "Deployment").items():
        assert deployment["spec"]["replicas"] == 1, name
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    for name, budget in of_kind(objects, "PodDisruptionBudget").items():
        assert "minAvailable" not in budget["spec"], f"{name}: with one replica it would block every node drain"
    assert "KRYPTOBOT_DATABASE_URL" not in env(main_container(objects, "trader"))
    assert of_kind(objects, "Deployment")["trader"]["spec"]["strategy"]["type"] == "Recreate", "one process on the SQLite file"


def test_scaled_autoscales_the_model_services_and_shares_a_postgresql_ledger(rendered):
    objects = rendered["scaled"]
    scalers, deployments = of_kind(objects, "HorizontalPodAutoscaler"), of_kind(objects, "Deployment")
    assert set(scalers) == set(MODEL_SERVICES)
    for name, scaler in scalers.items():
        spec = scaler["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8), name
        assert spec["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"], f"{name}: every apply would undo the autoscaler"
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"  # utilisation of the CPU request each container has
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert set(budgets) == set(BY_NAME)
    for name, budget in budgets.items():
        assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"], name
    trader = deployments["trader"]["spec"]
    assert trader["replicas"] >= 2 and trader["strategy"]["type"] == "RollingUpdate"
    ledger = env(main_container(objects, "trader"))["KRYPTOBOT_DATABASE_URL"]
    assert ledger["valueFrom"]["secretKeyRef"]["key"] == "ledger-url" and "value" not in ledger
    # two traders on several nodes share the reports volume
    assert of_kind(objects, "PersistentVolumeClaim")["trader-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
