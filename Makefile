# The two commands: `make run` (the proxy on example.config.yaml) and `make test` (everything
# CI runs). Both create the virtualenv they need on first use. The targets call $(BIN)/llm-proxy,
# so they work without activating the virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= example.config.yaml

.PHONY: venv run run-db mock check-config test screenshots lint typecheck fmt clean bench bench-quick bench-client bench-logs bench-scale soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# `serve` switches to database mode whenever DB_URL is set, and database mode refuses a file
# with providers: `run` is the file, always (a DB_URL exported for other work is ignored).
run: $(STAMP)  ## the proxy on $(CONFIG) (port 18000), YAML mode even when DB_URL is set
	env -u DB_URL $(BIN)/llm-proxy serve --config $(CONFIG)

# Database mode: providers and keys from $DB_URL; settings (listen address, timeouts) from the
# environment, or from DB_CONFIG, a file without providers and master_keys.
run-db: $(STAMP)  ## the proxy in database mode (needs DB_URL; optional DB_CONFIG=settings.yaml)
	@test -n "$$DB_URL" || { echo "run-db: set DB_URL (see README, Database mode)" >&2; exit 2; }
	$(BIN)/llm-proxy serve $(if $(DB_CONFIG),--config $(DB_CONFIG))

mock: $(STAMP)  ## a fake OpenAI API on 127.0.0.1:18001, for offline use
	$(BIN)/llm-proxy mock-upstream

check-config: $(STAMP)  ## check $(CONFIG) as `make run` serves it (YAML mode)
	env -u DB_URL $(BIN)/llm-proxy check-config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check llm_proxy tests
	$(BIN)/ruff format --check llm_proxy tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck  ## lint, types, then the whole test suite
	$(BIN)/pytest -q

screenshots: $(STAMP)  ## the README's admin UI pictures, taken by tests/test_ui.py in chromium
	LLM_PROXY_UI_SCREENSHOTS=tests/ui/screenshots LLM_PROXY_REQUIRE_BROWSER=1 $(BIN)/pytest -q tests/test_ui.py

fmt: $(STAMP)
	$(BIN)/ruff format llm_proxy tests
	$(BIN)/ruff check --fix llm_proxy tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)  ## direct vs bare aiohttp forwarder vs nginx vs llm-proxy; JSON into bench-results/
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get install -y -q wrk >/dev/null) || echo "wrk not installed: using the built-in load generator"
	$(BIN)/python -m tests.perf.bench $(BENCH_ARGS)

bench-scale: $(STAMP)  ## req/s and CPU with 1..nproc instances on one port (server.reuse_port)
	$(BIN)/python -m tests.perf.scale $(BENCH_ARGS)

bench-logs: $(STAMP)  ## admin API query times over a 10-million-row request log (ROWS=...)
	$(BIN)/python -m tests.perf.logs_bench --rows $(or $(ROWS),10000000)

soak: $(STAMP)  ## 10 minutes of mixed traffic with every feature on; fails if RSS grows
	$(BIN)/python -m tests.perf.soak $(SOAK_ARGS)

bench-quick: $(STAMP)  ## the same, in seconds (a smoke test of the harness)
	$(BIN)/python -m tests.perf.bench --quick

bench-client: $(STAMP)  ## CPU per request: the upstream client vs aiohttp.ClientSession vs pyreqwest
	@$(BIN)/python -c "import pyreqwest" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]' || echo "pyreqwest not installed: its row is skipped"
	$(BIN)/python -m tests.perf.client_bench $(BENCH_ARGS)
