# The two commands: `make run` (the proxy on example.config.yaml) and `make test` (everything
# CI runs). Both create the virtualenv they need on first use: `make run` (and run-db, mock,
# check-config) only what serving needs, `make test` (and lint, typecheck, screenshots, the
# benchmarks) adds the test extra. The targets call $(BIN)/llm-proxy, so they work without
# activating the virtualenv.
#
# Variables (`make run CONFIG=config.yaml`, `make mock PORT=18002`):
#   PYTHON   the interpreter the virtualenv is made from (3.11+; default python3)
#   VENV     where the virtualenv lives (default .venv)
#   CONFIG   the file `make run` and `make check-config` use (default example.config.yaml)
#   PORT     the port `make run` and `make run-db` listen on (also read from the environment),
#            and `make mock` (only when given on make's command line; default 18001)
#   DB_CONFIG  the settings-only file `make run-db` reads (optional)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
CONFIG ?= example.config.yaml

.PHONY: help venv venv-test run run-db mock check-config test screenshots lint typecheck fmt clean bench bench-protocols bench-tracing bench-routing bench-cache bench-teams bench-ab bench-quick bench-client bench-logs bench-scale bench-instructions soak

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24
	@sed -n '/^# Variables/,/^PYTHON/p' $(MAKEFILE_LIST) | sed -e '$$d' -e 's/^#//'

# The stamp is the only mark of a finished virtualenv. Without it, whatever $(VENV) holds is
# the leftover of a failed or interrupted install (a venv made by another Python, or without
# pip): it is removed and made again, so one failure never makes every later make fail.
# Where $(PYTHON) has pip 22.3+, that pip installs into a venv made without one (`--python`),
# pip itself included: ensurepip (pip and setuptools unpacked and compiled) was a quarter of the
# first `make run`. Elsewhere (Debian's python3 has no pip) the venv brings its own.
# --no-compile: compiling every installed module up front was another sixth. Python compiles
# what serving imports on first use, and caches it, unless PYTHONDONTWRITEBYTECODE is set (as
# on some machines and in containers): then every start compiles again, about 0.5 s.
PIP_FLAGS := -q --disable-pip-version-check
$(STAMP): pyproject.toml
	@test -f $@ || ! test -f $(VENV)/pyvenv.cfg || rm -rf $(VENV)
	if $(PYTHON) -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (22, 3))' 2>/dev/null; then \
	  $(PYTHON) -m venv --without-pip $(VENV) && \
	  $(PYTHON) -m pip $(PIP_FLAGS) --python $(BIN)/python install --no-compile pip -e .; \
	else \
	  $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install $(PIP_FLAGS) --no-compile -e .; \
	fi
	touch $@

# The test extra on top (pytest, the openai SDK, ruff, mypy, the browsers' driver, schemathesis,
# the container validators): only `make test` and its kin need it. Then everything is compiled
# once (what --no-compile left, and the package): the suite starts hundreds of processes, and
# under PYTHONDONTWRITEBYTECODE each compiled its imports again (the suite took 6.5 min, not 4).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[test]'
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib llm_proxy >/dev/null
	touch $@

venv: $(STAMP)  ## .venv with llm-proxy and what serving needs
venv-test: $(TEST_STAMP)  ## the same plus the test extra (pytest, the openai SDK, ruff, mypy, ...)

# `serve` switches to database mode whenever DB_URL is set, and database mode refuses a file
# with providers: `run` is the file, always (a DB_URL exported for other work is ignored; set
# empty, not unset, so that a DB_URL in ./.env, loaded below the environment, is ignored too).
run: $(STAMP)  ## the proxy on $(CONFIG) (port 18000), YAML mode even when DB_URL is set
	DB_URL= $(BIN)/llm-proxy serve --config $(CONFIG)

# Database mode: providers and keys from $DB_URL; settings (listen address, timeouts) from the
# environment, or from DB_CONFIG, a file without providers and master_keys.
run-db: $(STAMP)  ## the proxy in database mode (needs DB_URL; optional DB_CONFIG=settings.yaml)
	@test -n "$$DB_URL" || grep -qE '^[[:space:]]*(export[[:space:]]+)?DB_URL[[:space:]]*=[[:space:]]*[^[:space:]#]' .env 2>/dev/null \
		|| { echo "run-db: set DB_URL, in the environment or ./.env (see README, Database mode)" >&2; exit 2; }
	$(BIN)/llm-proxy serve $(if $(DB_CONFIG),--config $(DB_CONFIG))

# PORT is taken from the command line only: a PORT exported for the proxy must not move the
# fake upstream onto the proxy's port.
mock: $(STAMP)  ## a fake OpenAI API on 127.0.0.1:18001 (PORT=... for another), for offline use
	$(BIN)/llm-proxy mock-upstream $(if $(filter command line,$(origin PORT)),--port $(PORT))

check-config: $(STAMP)  ## check $(CONFIG) as `make run` serves it (YAML mode)
	DB_URL= $(BIN)/llm-proxy check-config $(CONFIG)

lint: $(TEST_STAMP)
	$(BIN)/ruff check llm_proxy tests
	$(BIN)/ruff format --check llm_proxy tests

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

test: lint typecheck  ## lint, types, then the whole test suite
	$(BIN)/pytest -q

screenshots: $(TEST_STAMP)  ## the README's admin UI pictures, taken by tests/ui/test_ui.py in chromium
	LLM_PROXY_UI_SCREENSHOTS=tests/ui/screenshots LLM_PROXY_REQUIRE_BROWSER=1 $(BIN)/pytest -q tests/ui/test_ui.py

fmt: $(TEST_STAMP)
	$(BIN)/ruff format llm_proxy tests
	$(BIN)/ruff check --fix llm_proxy tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# wrk is a Debian package: installed when missing and apt can (the benchmarks fall back to a
# built-in aiohttp load generator). PROTOCOLS_ARGS go to protocols_bench (e.g. --litellm BIN),
# TRACING_ARGS to tracing_bench (e.g. --rounds 3), ROUTING_ARGS to routing_bench, CACHE_ARGS to
# cache_bench, TEAMS_ARGS to teams_bench.
WRK := @command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get install -y -q wrk >/dev/null) || echo "wrk not installed: using the built-in load generator"

bench: $(TEST_STAMP)  ## direct vs bare aiohttp forwarder vs nginx vs llm-proxy, then the protocol paths; JSON into bench-results/
	$(WRK)
	$(BIN)/python -m tests.perf.bench $(BENCH_ARGS)
	$(BIN)/python -m tests.perf.protocols_bench $(PROTOCOLS_ARGS)
	$(BIN)/python -m tests.perf.tracing_bench $(TRACING_ARGS)
	$(BIN)/python -m tests.perf.routing_bench $(ROUTING_ARGS)
	$(BIN)/python -m tests.perf.cache_bench $(CACHE_ARGS)
	$(BIN)/python -m tests.perf.teams_bench $(TEAMS_ARGS)

bench-protocols: $(TEST_STAMP)  ## OpenAI/Anthropic clients, passed through and translated: CPU/req, req/s, streams
	$(WRK)
	$(BIN)/python -m tests.perf.protocols_bench $(PROTOCOLS_ARGS)

bench-tracing: $(TEST_STAMP)  ## tracing off and on, a client's traceparent or not: CPU/req at 32 and 128 conns, streams
	$(WRK)
	$(BIN)/python -m tests.perf.tracing_bench $(TRACING_ARGS)

bench-routing: $(TEST_STAMP)  ## no routing vs a routing section that matches nothing: CPU/req at 32 conns
	$(WRK)
	$(BIN)/python -m tests.perf.routing_bench $(ROUTING_ARGS)

bench-cache: $(TEST_STAMP)  ## the response cache: no cache vs every request a hit vs every one a miss: CPU/req, p50 at 32 conns
	$(WRK)
	$(BIN)/python -m tests.perf.cache_bench $(CACHE_ARGS)

bench-teams: $(TEST_STAMP)  ## a key with every limit vs the same key in a team with every limit: CPU/req at 32 conns
	$(WRK)
	$(BIN)/python -m tests.perf.teams_bench $(TEAMS_ARGS)

bench-ab: $(TEST_STAMP)  ## before/after: llm-proxy at BASE (default origin/main or main) vs this tree, interleaved
	$(BIN)/python -m tests.perf.ab --base $(or $(BASE),$(shell git rev-parse -q --verify origin/main >/dev/null && echo origin/main || echo main)) $(BENCH_ARGS)

bench-instructions: $(TEST_STAMP)  ## instructions per request under callgrind, per protocol route (exact: any machine load)
	@command -v valgrind >/dev/null || (command -v apt-get >/dev/null && apt-get install -y -q valgrind >/dev/null) || echo "valgrind not installed"
	$(BIN)/python -m tests.perf.instructions $(INSTRUCTIONS_ARGS)

bench-scale: $(TEST_STAMP)  ## req/s and CPU with 1..nproc instances on one port (server.reuse_port)
	$(BIN)/python -m tests.perf.scale $(BENCH_ARGS)

bench-logs: $(TEST_STAMP)  ## admin API query times over a 10-million-row request log (ROWS=...)
	$(BIN)/python -m tests.perf.logs_bench --rows $(or $(ROWS),10000000)

soak: $(TEST_STAMP)  ## 10 minutes of mixed traffic with every feature on; fails if RSS grows
	$(BIN)/python -m tests.perf.soak $(SOAK_ARGS)

bench-quick: $(TEST_STAMP)  ## the same, in seconds (a smoke test of the harness)
	$(BIN)/python -m tests.perf.bench --quick
	$(BIN)/python -m tests.perf.protocols_bench --quick

bench-client: $(TEST_STAMP)  ## CPU per request: the upstream client vs aiohttp.ClientSession vs pyreqwest
	@$(BIN)/python -c "import pyreqwest" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]' || echo "pyreqwest not installed: its row is skipped"
	$(BIN)/python -m tests.perf.client_bench $(BENCH_ARGS)
