# Patchbay developer entry points. `make help` lists them.
#
# Everything a test needs is installed by `make test` itself: the Python venv (.venv), the pinned npm clients and
# conformance suite (tests/e2e/node), the built wheel in clean venvs (build/install/), and from apt only the
# servers the tests start (postgresql, mariadb-server, redis-server, haproxy). Steps re-run only when their inputs
# change (stamps).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k conformance -x"`.
PYTEST_ARGS ?=

NODE_DIR := tests/e2e/node
# Dev install (tests, lint); the runtime-only stamp lets `make demo` skip the dev extras.
VENV_STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
# Inside node_modules, so deleting node_modules re-triggers the install.
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

PIP := $(VENV)/bin/python -m pip --disable-pip-version-check
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help venv node demo test lint conformance bench clean postgres mariadb chromium redis haproxy

help: ## list the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  make %-14s %s\n", $$1, $$2 }'

venv: $(VENV_STAMP) ## create .venv with Patchbay and its dev tools (re-runs when pyproject.toml changes)

# torch==2.13.0 (the CPU build) goes in before the documents-embeddings extra: left to the resolver, its bare
# `torch` requirement could pull a multi-GB CUDA build.
$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install --progress-bar off torch==2.13.0
	$(PIP) install --progress-bar off -e '.[dev,documents-embeddings,otel]'
	touch $@ $(RUNTIME_STAMP)

# A dev install is a superset of the runtime one: reuse it when it is current, otherwise install without extras.
$(RUNTIME_STAMP): pyproject.toml
	if [ ! $(VENV_STAMP) -nt pyproject.toml ]; then \
	  $(PYTHON) -m venv $(VENV); \
	  $(PIP) install --upgrade pip; \
	  $(PIP) install --progress-bar off -e .; \
	fi
	touch $@

node: $(NODE_STAMP) ## install the pinned npm test clients into tests/e2e/node (npm ci)

# --ignore-scripts: none of the pinned packages needs an install script (Node 22 ships in the tarball).
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

demo: $(RUNTIME_STAMP) ## serve the built-in demo (kanban board + handbook search/fetch) on HOST:PORT (default 127.0.0.1:8000)
	$(VENV)/bin/patchbay serve --demo --host $(HOST) --port $(PORT)

# The sql connector's tests and benchmark start throwaway clusters with Debian's initdb/pg_ctl (tests/support/postgres.py).
postgres: ## install PostgreSQL server binaries (Debian postgresql) if missing
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends postgresql; }

# The sql connector's MySQL/MariaDB tests start a throwaway server with mariadb-install-db/mariadbd (tests/support/mariadb.py).
mariadb: ## install MariaDB server binaries (Debian mariadb-server) if missing
	command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || \
	  { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends mariadb-server; }

# The fleet's tests start a throwaway redis-server on a free loopback port (tests/support/redis_server.py).
redis: ## install the Redis server (Debian redis-server) if missing
	command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || \
	  { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends redis-server; }

# The fleet's end-to-end tests put replicas behind a real HAProxy doing plain round-robin (tests/e2e/test_fleet_*.py).
haproxy: ## install HAProxy (Debian haproxy) if missing
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || \
	  { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends haproxy; }

# The console's browser tests (tests/e2e/test_console_*.py) drive Debian's chromium with Playwright; Playwright's
# own browser download is never used (`playwright install` is not run).
chromium: ## install the Chromium browser (Debian chromium) if missing
	[ -x /usr/bin/chromium ] || { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends chromium; }

# What users install is what we test (tests/install, docs/testing.md): the wheel goes into fresh venvs under
# build/install/ that never see src/: venv-base (no extras) and one venv per optional extra. A venv is recreated
# when pyproject.toml changes, so a dependency dropped from it is gone there too; when only src/ changes, just the
# wheel is rebuilt and reinstalled. `make test` runs these tests with the rest of the suite.
INSTALL_DIR := build/install
INSTALL_EXTRAS := sql-postgres sql-mysql documents-embeddings otel fleet
INSTALL_VENVS := $(addprefix $(INSTALL_DIR)/venv-,base $(INSTALL_EXTRAS))
WHEEL_STAMP := $(INSTALL_DIR)/dist/.built
PACKAGE_FILES := $(shell find src -type f ! -name '*.py[co]' ! -path '*/__pycache__/*')
CLEAN_PIP = $(@D)/bin/python -m pip --disable-pip-version-check

.PHONY: install-venvs install-check
.SECONDARY: $(addsuffix /.created,$(INSTALL_VENVS))
test: install-venvs

# Under the lock tests/install/conftest.py takes too, so a test run and a make never rebuild the same venv at once.
install-venvs: ## build the wheel and install it into clean venvs (build/install/)
	mkdir -p $(INSTALL_DIR)
	flock $(INSTALL_DIR)/.lock $(MAKE) --no-print-directory $(addsuffix /.installed,$(INSTALL_VENVS))

install-check: install-venvs $(VENV_STAMP) postgres ## the clean-install tests alone (tests/install)
	$(VENV)/bin/pytest tests/install $(PYTEST_ARGS)

$(WHEEL_STAMP): pyproject.toml README.md $(PACKAGE_FILES)
	rm -rf $(@D)
	$(PYTHON) -m pip wheel --disable-pip-version-check --quiet --progress-bar off --no-deps --wheel-dir $(@D) .
	touch $@

# torch==2.13.0 (CPU) first, as for .venv: left to the resolver, the extra's bare `torch` could pull a CUDA build.
$(INSTALL_DIR)/venv-%/.created: pyproject.toml
	rm -rf $(@D)
	$(PYTHON) -m venv $(@D)
	$(if $(filter documents-embeddings,$*),$(CLEAN_PIP) install --quiet --progress-bar off torch==2.13.0)
	touch $@

$(INSTALL_DIR)/venv-%/.installed: $(INSTALL_DIR)/venv-%/.created $(WHEEL_STAMP)
	$(CLEAN_PIP) uninstall --yes mcp-patchbay
	$(CLEAN_PIP) install --quiet --progress-bar off "$$(ls $(INSTALL_DIR)/dist/*.whl)$(if $(filter base,$*),,[$*])"
	$(CLEAN_PIP) check
	touch $@

test: $(VENV_STAMP) $(NODE_STAMP) postgres mariadb chromium redis haproxy ## lint, then the whole test suite (unit, e2e, conformance, clean installs)
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV_STAMP) ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

conformance: $(VENV_STAMP) $(NODE_STAMP) ## only the official MCP conformance suite against Patchbay
	$(VENV)/bin/pytest tests/conformance -v $(PYTEST_ARGS)

bench: $(VENV_STAMP) postgres redis haproxy ## benchmarks (installs wrk with apt-get if missing)
	command -v wrk >/dev/null || { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends wrk; }
	$(MAKE) --no-print-directory bench-peers || echo "bench peers not installed: the proxy section quotes perf-baseline.md"
	$(VENV)/bin/python -m bench

# The proxy benchmark's peers (bench/proxy.py), each in its own venv, never in Patchbay's: mcp-proxy needs mcp < 2.
# Pinned to the versions of the reference measurements.
PEERS_DIR := build/bench-peers
.PHONY: bench-peers
bench-peers: $(PEERS_DIR)/fastmcp/.installed $(PEERS_DIR)/mcp-proxy/.installed ## the proxy benchmark's peers (FastMCP proxy, mcp-proxy)

$(PEERS_DIR)/fastmcp/.installed:
	rm -rf $(@D) && $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --disable-pip-version-check --quiet --progress-bar off fastmcp==4.1.6 uvloop httptools
	touch $@

$(PEERS_DIR)/mcp-proxy/.installed:
	rm -rf $(@D) && $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --disable-pip-version-check --quiet --progress-bar off mcp-proxy==0.13.0 uvloop httptools
	touch $@

# Mutation testing (docs/testing.md): mutmut over the modules in mutate/modules.toml, each judged by its own unit
# tests, one worker at nice 10. MODULES picks groups or modules, e.g. `make mutate MODULES="sql-guard auth/token.py"`;
# FRESH=1 discards cached results; MUTATE_TIMEOUT bounds each group (seconds). Not part of `make test`: it is slow.
MODULES ?=
FRESH ?=
MUTATE_TIMEOUT ?= 3600

.PHONY: mutate
mutate: $(VENV_STAMP) ## mutation testing with mutmut, per module (MODULES=..., FRESH=1); summary in build/mutate/
	$(VENV)/bin/python mutate/run.py --modules "$(MODULES)" --timeout $(MUTATE_TIMEOUT) $(if $(FRESH),--fresh)

clean: ## remove the venv, node_modules, caches and test/bench output
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type d -name '*.egg-info' -prune -exec rm -rf {} +
