# Two commands: `make run` starts the stack locally, `make test` runs the whole suite.
# Both create the virtual environment and install the project from its own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REDIS_HOST ?= 127.0.0.1
REDIS_PORT ?= 6379

.PHONY: run test venv redis bench browser k8s-tools clean train-ml train-anomaly train-ensemble train-forecast feature-selection start-ml-bot start-ensemble-bot start-forecast-bot

# The dependencies come from the lock (uv.lock, exported to requirements/dev.txt), every file's
# hash checked; then the project itself, without dependencies. pip alone: a fresh machine needs
# only python3. The lock is for Python 3.11 on Linux x86_64, where every export line's marker holds
# (elsewhere pip would skip them all and install nothing), hence the check first.
$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c "import platform, sys; v = sys.version_info[:2]; sys.exit(None if v == (3, 11) and sys.platform == 'linux' and platform.machine() == 'x86_64' else f'uv.lock is for Python 3.11 on Linux x86_64, not Python {v[0]}.{v[1]} on {sys.platform} {platform.machine()} (PYTHON=python3.11 make ...)')"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# After editing pyproject.toml's dependencies: `make lock` re-resolves uv.lock (versions move only
# where the edit needs it; `make lock ARGS=--upgrade` takes the newest allowed everywhere) and
# rewrites every export. Image <name> (services/<name>/Dockerfile) installs requirements/<name>.txt,
# the extras its service needs (one EXPORT_EXTRAS_<name> line each); dev.txt is everything.
EXPORT_EXTRAS_signal := serve onnx sample
EXPORT_EXTRAS_ensemble := serve onnx sample
EXPORT_EXTRAS_anomaly := serve tf sample
EXPORT_EXTRAS_forecast := serve tf sample
EXPORT_EXTRAS_trader := serve trader sample ray
EXPORT_EXTRAS_dev := all dev
EXPORTS := $(patsubst EXPORT_EXTRAS_%,%,$(filter EXPORT_EXTRAS_%,$(.VARIABLES)))
UV := $(VENV)/bin/uv
.PHONY: lock
lock: $(STAMP)
	$(UV) lock $(ARGS)
	$(foreach name,$(EXPORTS),$(UV) export --quiet --frozen --no-emit-project --hashes $(EXPORT_EXTRAS_$(name):%=--extra %) --output-file requirements/$(name).txt &&) true

venv: $(STAMP)

# Starts a throwaway Redis (no persistence) when none answers; installs it if missing.
redis: $(STAMP)
	@if ! $(PY) -c "import redis; redis.Redis(host='$(REDIS_HOST)', port=$(REDIS_PORT), socket_timeout=1).ping()" 2>/dev/null; then \
	  command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server); \
	  echo "starting redis-server on $(REDIS_HOST):$(REDIS_PORT)"; \
	  redis-server --daemonize yes --bind $(REDIS_HOST) --port $(REDIS_PORT) --save "" --appendonly no; \
	  for i in 1 2 3 4 5 6 7 8 9 10; do $(PY) -c "import redis; redis.Redis(host='$(REDIS_HOST)', port=$(REDIS_PORT)).ping()" 2>/dev/null && break; sleep 0.3; done; \
	fi

# The Swagger UI browser tests drive Debian's Chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# kubectl renders the Kubernetes manifests (`kubectl kustomize`, tests/test_k8s.py); Debian's
# kubernetes-client when none is installed (deploy/k8s is written for its kustomize too).
k8s-tools:
	@command -v kubectl >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client)

# A local Ray head for the walk-forward tests when none answers: 127.0.0.1 only, 2 CPUs, a small
# object store, no dashboard or log monitor (the suite shares the machine's cores and memory).
# It outlives the tests, as Redis does; `.venv/bin/ray stop` ends it. The tests read its address
# from KRYPTOBOT_TEST_RAY_ADDRESS. Its workers run this venv's Python and find the project through
# the editable install (and the driver's working directory, which Ray puts on their path).
RAY_HOST ?= 127.0.0.1
RAY_PORT ?= 6389
export KRYPTOBOT_TEST_RAY_ADDRESS := $(RAY_HOST):$(RAY_PORT)
.PHONY: ray
ray: $(STAMP)
	@if ! $(PY) -c "import socket; socket.create_connection(('$(RAY_HOST)', $(RAY_PORT)), 1).close()" 2>/dev/null; then \
	  echo "starting a Ray head on $(RAY_HOST):$(RAY_PORT)"; \
	  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(VENV)/bin/ray start --head --node-ip-address=$(RAY_HOST) --port=$(RAY_PORT) \
	    --num-cpus=2 --num-gpus=0 --object-store-memory=300000000 --include-dashboard=false \
	    --include-log-monitor=false --disable-usage-stats >/dev/null || exit 1; \
	fi

test: $(STAMP) redis ray browser k8s-tools
	$(PY) -m pytest -q -p no:cacheprovider

# The reliability suite's long run (kill loops, swaps, the 100,000-prediction soak: about an
# hour on 2 cores), then its figures into docs/reliability.md. `make test` runs the short one.
.PHONY: reliability
reliability: $(STAMP) redis
	rm -rf test-artifacts/reliability
	KRYPTOBOT_RELIABILITY=long $(PY) -m pytest -q -p no:cacheprovider tests/reliability
	$(PY) -m tests.reliability.report

run: $(STAMP) redis
	KRYPTOBOT_REDIS_URL=$${KRYPTOBOT_REDIS_URL:-redis://$(REDIS_HOST):$(REDIS_PORT)/0} $(PY) -m services.stack

# bench/bench_balancer.py puts the signal service's replicas behind Debian's HAProxy.
.PHONY: haproxy
haproxy:
	@command -v haproxy >/dev/null || test -x /usr/sbin/haproxy || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy)

bench: $(STAMP) redis haproxy
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) models var results test-artifacts

# The original scripts, as CLI calls to a running stack (`make run` in another terminal).
# Options pass through ARGS, e.g. make train-ensemble ARGS="--voting hard --weights 1,2,1".
CLI := $(PY) -m services.cli
train-ml: $(STAMP)
	$(CLI) train-signal $(ARGS)
train-anomaly: $(STAMP)
	$(CLI) train-anomaly $(ARGS)
train-ensemble: $(STAMP)
	$(CLI) train-ensemble $(ARGS)
train-forecast: $(STAMP)
	$(CLI) train-forecast $(ARGS)
feature-selection: $(STAMP)
	$(CLI) feature-selection $(ARGS)
start-ml-bot: $(STAMP)
	$(CLI) run-bot --ml --no-ensemble --no-forecast $(ARGS)
start-ensemble-bot: $(STAMP)
	$(CLI) run-bot --no-ml --ensemble --no-forecast $(ARGS)
start-forecast-bot: $(STAMP)
	$(CLI) run-bot --no-ml --no-ensemble --forecast $(ARGS)
