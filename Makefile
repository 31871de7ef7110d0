# Two commands: `make run` starts the stack locally, `make test` runs the whole suite.
# Both create the virtual environment and install the project from its own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REDIS_HOST ?= 127.0.0.1
REDIS_PORT ?= 6379

.PHONY: run test venv redis bench browser k8s-tools clean train-ml train-anomaly train-ensemble train-forecast feature-selection start-ml-bot start-ensemble-bot start-forecast-bot

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

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

test: $(STAMP) redis browser k8s-tools
	$(PY) -m pytest -q -p no:cacheprovider

run: $(STAMP) redis
	KRYPTOBOT_REDIS_URL=$${KRYPTOBOT_REDIS_URL:-redis://$(REDIS_HOST):$(REDIS_PORT)/0} $(PY) -m services.stack

bench: $(STAMP) redis
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
