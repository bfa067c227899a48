# The two commands of the README. Both create and use the virtualenv .venv/ at the project root.
#   make run   - install and start the service (SQLite in ./data, no credentials) on
#                http://127.0.0.1:8080 (make run PORT=9000 HOST=0.0.0.0 for another address)
#   make test  - install the dev tools and run lint, format check, type check and the tests

PYTHON ?= python3
# Empty: server.port and server.host from the configuration (8080, 127.0.0.1).
PORT ?=
HOST ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck bench chromium clean

run: $(VENV)/.installed
	$(BIN)/seguibot serve $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

test: $(VENV)/.dev-installed node_modules/.installed chromium lint typecheck
	$(BIN)/pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Seguibot needs Python 3.11 or newer (found $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(VENV)/.installed $@

# Prism (npm) validates our Twilio requests against Twilio's OpenAPI description in tests.
# Without npm the Prism tests skip and say so.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the Prism contract tests will be skipped"; fi

# The web chat page is tested in Debian's headless Chromium. Without it those tests skip and
# say so.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get install -y -qq chromium >/dev/null 2>&1 || \
			{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
		else echo "chromium not found: the browser tests will be skipped"; fi; }

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
