# Airlock: the two commands a fresh machine needs are `make serve` and `make test`.
# Everything runs from .venv/bin (no activation); tools land in .venv and .tools (both ignored).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: serving needs only the server's locked dependencies; tests and lint need the dev lock.
SERVER_STAMP := $(VENV)/.installed-server
STAMP := $(VENV)/.installed-dev
PIP_TOOLS_VERSION := 7.6.2
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-header \
	--no-emit-index-url --no-emit-find-links
BUF_VERSION := 1.75.0
BUF_DIR := .tools/buf
BUF := $(BUF_DIR)/node_modules/.bin/buf
BUF_STAMP := $(BUF_DIR)/.installed-$(BUF_VERSION)
ADMIN_TOKEN := var/admin.token
LOG_KEY := $(or $(AIRLOCK_LOG_KEY_FILE),var/log-key.pem)

.DEFAULT_GOAL := help
.PHONY: help install serve test gen lint check-gen typecheck unit bench demo clean lock screenshots browser

help:
	@echo "make serve   install, migrate, bootstrap once, serve on 127.0.0.1:50051 (SQLite var/airlock.db)"
	@echo "make test    install, lint the contract, check the stubs, ruff, mypy, the whole pytest suite"
	@echo "make gen     regenerate the Python stubs in clients/airlock from proto/"
	@echo "make lint    buf lint/format/breaking, stub and docs/errors.md check, ruff, mypy"
	@echo "make bench   run bench/run.py"
	@echo "make demo    run the whole recovery story against the server of make serve"
	@echo "make lock    re-resolve requirements/*.txt (hashed) after a change of pyproject.toml"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every dependency comes from a hashed lock (requirements/*.txt, made by `make lock`); the project
# itself is installed editable on top, without resolving anything again. Reinstalled only when
# the lock or pyproject.toml changes.
$(SERVER_STAMP): requirements/server.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/server.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(STAMP): requirements/dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@ $(SERVER_STAMP)

install: $(STAMP)

# pip-tools, pinned, in a venv of its own, resolves both locks with every file's hash.
lock:
	$(PYTHON) -m venv .tools/lock
	.tools/lock/bin/python -m pip install --quiet pip-tools==$(PIP_TOOLS_VERSION)
	.tools/lock/bin/pip-compile $(LOCK_FLAGS) --extra server -o requirements/server.txt pyproject.toml
	.tools/lock/bin/pip-compile $(LOCK_FLAGS) --extra server --extra dev -o requirements/dev.txt \
		pyproject.toml

$(BUF_STAMP):
	npm install --prefix $(BUF_DIR) --no-audit --no-fund --save-exact @bufbuild/buf@$(BUF_VERSION)
	@touch $@

serve: $(SERVER_STAMP)
	$(BIN)/airlock-server migrate
	@if [ -e $(ADMIN_TOKEN) ]; then \
		echo "admin token: $(ADMIN_TOKEN) (exists; bootstrap skipped)"; \
	else \
		$(BIN)/airlock-server bootstrap --admin-token-file $(ADMIN_TOKEN) && \
		echo "admin token: $(ADMIN_TOKEN)"; \
	fi
	@if [ ! -e $(LOG_KEY) ]; then \
		$(BIN)/airlock-server log-key --log-key-file $(LOG_KEY) && \
		$(BIN)/airlock-server --log-key-file $(LOG_KEY) seal; \
	fi
	@echo "approval portal: http://localhost:$(PORTAL_PORT) (invitation links: make demo)"
	AIRLOCK_PORTAL_LISTEN=$${AIRLOCK_PORTAL_LISTEN:-127.0.0.1:$(PORTAL_PORT)} \
		AIRLOCK_PORTAL_ORIGIN=$${AIRLOCK_PORTAL_ORIGIN:-http://localhost:$(PORTAL_PORT)} \
		$(BIN)/airlock-server serve

gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

check-gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

# The contract: buf's rules and format, no breaking change against the previous commit (see
# scripts/buf_breaking.py), generated stubs and docs/errors.md up to date.
lint: $(STAMP) $(BUF_STAMP)
	$(BUF) lint proto
	$(BUF) format --diff --exit-code proto
	$(BIN)/python scripts/buf_breaking.py --buf $(BUF)
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/python scripts/errors_doc.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The portal's browser tests drive Debian's chromium (never `playwright install`).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: lint browser
	$(BIN)/pytest

# The portal's screenshots in docs/screenshots/ (the tests write them to a temporary
# directory otherwise, so that a test run leaves the tree clean).
screenshots: $(STAMP) browser
	AIRLOCK_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -p no:xdist \
		tests/e2e/test_portal_browser.py -k sqlite

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The whole story of the design against a running server (`make serve` in another terminal):
# approvers, team, vault, a recovery request, the attacker refused, two signed votes, access;
# the recovery in the event log, VerifyLog, a signed checkpoint; team health, a baseline; the
# grant revoked through the team.
AIRLOCK_SERVER ?= 127.0.0.1:50051
PORTAL_PORT ?= 8080
demo: $(SERVER_STAMP)
	$(BIN)/airlock --server $(AIRLOCK_SERVER) --token-file $(ADMIN_TOKEN) demo

clean:
	rm -rf .tools .mypy_cache .ruff_cache .pytest_cache
	rm -f $(STAMP) $(SERVER_STAMP)
