# Airlock: the two commands a fresh machine needs are `make serve` and `make test`.
# Everything runs from .venv/bin (no activation); tools land in .venv and .tools (both ignored).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUF_VERSION := 1.75.0
BUF_DIR := .tools/buf
BUF := $(BUF_DIR)/node_modules/.bin/buf
BUF_STAMP := $(BUF_DIR)/.installed-$(BUF_VERSION)
ADMIN_TOKEN := var/admin.token
LOG_KEY := $(or $(AIRLOCK_LOG_KEY_FILE),var/log-key.pem)

.DEFAULT_GOAL := help
.PHONY: help install serve test gen lint check-gen typecheck unit bench demo clean

help:
	@echo "make serve   install, migrate, bootstrap once, serve on 127.0.0.1:50051 (SQLite var/airlock.db)"
	@echo "make test    install, lint the contract, check the stubs, ruff, mypy, the whole pytest suite"
	@echo "make gen     regenerate the Python stubs in clients/airlock from proto/"
	@echo "make lint    buf lint, stub check, ruff, mypy (no tests)"
	@echo "make bench   run bench/run.py"
	@echo "make demo    run the whole recovery story against the server of make serve"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

$(BUF_STAMP):
	npm install --prefix $(BUF_DIR) --no-audit --no-fund --save-exact @bufbuild/buf@$(BUF_VERSION)
	@touch $@

serve: $(STAMP)
	$(BIN)/airlock-server migrate
	@if [ -e $(ADMIN_TOKEN) ]; then \
		echo "admin token: $(ADMIN_TOKEN) (exists; bootstrap skipped)"; \
	else \
		$(BIN)/airlock-server bootstrap --admin-token-file $(ADMIN_TOKEN) && \
		echo "admin token: $(ADMIN_TOKEN)"; \
	fi
	@if [ ! -e $(LOG_KEY) ]; then \
		$(BIN)/airlock-server log-key --log-key-file $(LOG_KEY); \
	fi
	$(BIN)/airlock-server serve

gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

check-gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

lint: $(STAMP) $(BUF_STAMP)
	$(BUF) lint proto
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The whole story of the design against a running server (`make serve` in another terminal):
# approvers, team, vault, a recovery request, the attacker refused, two signed votes, access;
# the recovery in the event log, VerifyLog, a signed checkpoint; team health, a baseline; the
# grant revoked through the team.
AIRLOCK_SERVER ?= 127.0.0.1:50051
demo: $(STAMP)
	$(BIN)/airlock --server $(AIRLOCK_SERVER) --token-file $(ADMIN_TOKEN) demo

clean:
	rm -rf .tools .mypy_cache .ruff_cache .pytest_cache
	rm -f $(STAMP)
