# The two commands a new user needs:
#   make run   - set up (once) and run the main job on the embedded simulator and model
#   make test  - set up (once) and run the test suite (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EPISODE ?= r2r_val_unseen
ARGS ?= --limit 3

.PHONY: setup setup-test run test test-fast test-slow lint clean

# CPU torch comes first so that pip never pulls a multi-GB CUDA build on a machine without a GPU.
$(BIN)/navila-agent: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install -q torch; \
	else \
	  $(BIN)/pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu --retries 0 --timeout 10 \
	    || $(BIN)/pip install -q torch==2.13.0; \
	fi
	$(BIN)/pip install -q -e '.[dev,train]'
	@touch $@

setup: $(BIN)/navila-agent

# Browser tests drive Debian's chromium through Playwright; install it when we can (root + apt).
setup-test: setup
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will skip"; \
	fi

run: setup
	$(BIN)/navila-agent run --episode $(EPISODE) $(ARGS)

# The whole suite, slow tests included (5-10 minutes on 2 cores); `pytest` alone skips the slow ones.
test: setup-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "slow or not slow"

test-fast: setup-test
	$(BIN)/python -m pytest -q

test-slow: setup-test
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
