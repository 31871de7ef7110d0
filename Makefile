# Two commands: `make run` starts the stack locally, `make test` runs the whole suite.
# Both create the virtual environment and install the project from its own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REDIS_HOST ?= 127.0.0.1
REDIS_PORT ?= 6379

.PHONY: run test venv redis bench browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Starts a throwaway Redis when none answers (CI machines have one; fresh laptops may not).
redis:
	@$(PY) -m kryptobot.devtools.redis_up --host $(REDIS_HOST) --port $(REDIS_PORT)

browser: $(STAMP)
	@$(PY) -m kryptobot.devtools.browser_up

test: $(STAMP) redis browser
	$(PY) -m pytest -q -p no:cacheprovider

run: $(STAMP) redis
	$(PY) -m services.stack

bench: $(STAMP) redis
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) models var results test-artifacts
