# Verity: `make run` serves the demo on http://127.0.0.1:5000; `make test` runs the whole suite.
# Both do their own set-up. See README.md.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: run run-prod test bench lint security assets browser-deps clean help

help:
	@echo "make run    - set up and serve Verity with demo data on http://$(HOST):$(PORT)"
	@echo "make run-prod - the production layout from the environment (docs/deploy.md)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make bench  - run the benchmarks and print a table"
	@echo "make lint   - ruff"
	@echo "make security - ruff, then bandit (fails on a high-severity finding)"
	@echo "make assets - rebuild the vendored front-end assets from npm"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when a requirements file changes.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

# Per-installation secrets, made once and kept out of git (instance/ is ignored).
instance/verity.env:
	@mkdir -p instance
	@umask 077; $(PYTHON) -c 'import secrets; print(f"SECRET_KEY={secrets.token_urlsafe(48)}\nVERITY_DATA_KEY={secrets.token_hex(32)}")' > $@
	@echo "Wrote new secrets to $@"

run: $(VENV)/.runtime instance/verity.env
	@set -a; source instance/verity.env; set +a; export VERITY_DEMO=1; \
	$(BIN)/flask --app wsgi db upgrade heads && \
	$(BIN)/flask --app wsgi demo load >/dev/null && \
	$(BIN)/flask --app wsgi serve --host $(HOST) --port $(PORT)

# Production: web, signaling and background workers from the environment (bin/run-prod, docs/deploy.md).
run-prod: $(VENV)/.runtime
	$(BIN)/python bin/run-prod

browser-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v pdfsig >/dev/null || missing="$$missing poppler-utils"; \
	command -v certutil >/dev/null || missing="$$missing libnss3-tools"; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v turnserver >/dev/null || missing="$$missing coturn"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing$$missing from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "The end-to-end and deployment tests need Debian's packages:$$missing. Install them with:"; \
	    echo "  sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

test: $(VENV)/.dev browser-deps
	$(BIN)/python -m pytest

bench: $(VENV)/.dev
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; \
	  else echo "make bench needs wrk: sudo apt-get install wrk"; exit 1; fi; }
	$(BIN)/python -m bench

lint: $(VENV)/.dev
	$(BIN)/ruff check app signaling tests bench migrations bin/run-prod

# Static security checks (.ci/run runs them before the tests): ruff, whose S rules are bandit's checks at every
# severity (each accepted finding has a `noqa` with its reason), then bandit itself, which fails on any
# high-severity finding. bin/run-prod is named because it has no .py suffix. Configuration: [tool.bandit].
security: lint
	$(BIN)/bandit -c pyproject.toml -r app signaling wsgi.py bin/run-prod --severity-level high --quiet

assets:
	app/static/src/build.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
