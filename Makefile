# One entry point for people and CI. `make run` serves the site on SQLite; `make test`
# runs lint, migration checks and the whole suite on SQLite and PostgreSQL.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/deploysafe
PYTEST_ARGS ?=

.PHONY: run test lint test-sqlite test-postgres reset-admin clean bench-deploy-mode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_dev_admin
	@echo "Admin: http://127.0.0.1:8000/admin/"
	$(BIN)/python manage.py runserver 127.0.0.1:8000

reset-admin: $(VENV)/.runtime
	$(BIN)/python manage.py ensure_dev_admin --reset-password

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_ENV=test $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_ENV=test $(BIN)/python manage.py check

# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
define run_pytest
	$(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing." >&2; exit 1; fi; \
	exit $$status
endef

test-sqlite: $(VENV)/.dev
	@echo "=== Test suite on SQLite ==="
	env -u DATABASE_URL $(run_pytest)

test-postgres: $(VENV)/.dev
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(PG_URL:/deploysafe=/postgres)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "=== Test suite on PostgreSQL ($(PG_URL)) ==="; \
		DATABASE_URL=$(PG_URL) $(run_pytest); \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL at $(PG_URL) is unreachable and CI=true: failing. Start it with: pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start" >&2; exit 1; \
	else \
		echo "" >&2; \
		echo "!!! PostgreSQL at $(PG_URL) is unreachable: SKIPPING the PostgreSQL run. !!!" >&2; \
		echo "!!! Start it with: pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start" >&2; \
		echo "" >&2; \
	fi

test: lint test-sqlite test-postgres

# Deploy mode's cost while off (not run in CI): SQLite by default, or BENCH_DATABASE_URL.
bench-deploy-mode: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_deploy_mode.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
