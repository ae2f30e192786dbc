# One entry point for people and CI. `make run` serves the site on SQLite; `make test`
# runs lint, migration checks and the whole suite on SQLite and PostgreSQL.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/deploysafe
PYTEST_ARGS ?=
# pytest-xdist workers: much of the suite waits on subprocesses and servers, so two workers
# share 2 cores well. PYTEST_WORKERS=0 runs every test in the pytest process itself.
PYTEST_WORKERS ?= 2

RESULTS := var/reliability

.PHONY: rowhash reliability run test lint test-sqlite test-postgres chromium screenshots reset-admin write-paths clean bench bench-deploy-mode bench-integrity bench-deploy-safe

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

# deployguard/_rowhash.c, SQLite fingerprints' row hash in C, compiled in place for the venv's Python
# whenever it is newer than the module. Without a working C compiler the targets that need it carry
# on: deployguard/fingerprint.py then uses its pure-Python row hash (same numbers, slower).
ROWHASH_CFLAGS ?= -O2 -Wall -Wextra -fPIC -shared

rowhash: | $(BIN)/python
	@set -- $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'), sysconfig.get_paths()['include'])"); \
	so=deployguard/_rowhash$$1; \
	if [ -f "$$so" ] && [ "$$so" -nt deployguard/_rowhash.c ]; then exit 0; fi; \
	echo "$(CC) $(ROWHASH_CFLAGS) -I$$2 deployguard/_rowhash.c -o $$so"; \
	if $(CC) $(ROWHASH_CFLAGS) -I"$$2" deployguard/_rowhash.c -o "$$so.tmp" && mv "$$so.tmp" "$$so"; then :; else \
		rm -f "$$so" "$$so.tmp"; \
		echo "!!! Could not compile deployguard/_rowhash.c: SQLite fingerprints will use the slower pure-Python row hash. !!!" >&2; \
	fi

# The site and one job worker beside it. The worker runs in a process group of its own (setsid),
# killed as a whole (its autoreloader's child too) when the site stops: Ctrl-C, or make killed.
run: $(VENV)/.runtime rowhash
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_dev_admin
	@echo "Site: http://127.0.0.1:8000/  Admin: http://127.0.0.1:8000/admin/ (jobs: one db_worker)"
	@setsid $(BIN)/python manage.py db_worker & worker=$$!; \
	trap 'kill -TERM -$$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM HUP; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

reset-admin: $(VENV)/.runtime
	$(BIN)/python manage.py ensure_dev_admin --reset-password

lint: $(VENV)/.dev rowhash
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_ENV=test $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_ENV=test $(BIN)/python manage.py check
	DJANGO_ENV=test $(BIN)/python manage.py audit_write_paths --verbosity 0

# Regenerate the write-path catalogue after changing code that writes data.
write-paths: $(VENV)/.dev
	DJANGO_ENV=test $(BIN)/python manage.py audit_write_paths --format markdown > docs/WRITE_PATHS.md

# pytest exits 5 when it collects nothing: that is a failure here, not a pass.
define run_pytest
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing." >&2; exit 1; fi; \
	exit $$status
endef

# The browser tests need Debian's Chromium; install it when missing (root, as on CI machines).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	} || { [ "$$CI" != "true" ] && echo "!!! Could not install chromium: the browser tests will be SKIPPED. !!!" >&2; }

test-sqlite: $(VENV)/.dev rowhash chromium
	@echo "=== Test suite on SQLite ==="
	@mkdir -p $(RESULTS) && rm -f $(RESULTS)/sqlite.jsonl
	env -u DATABASE_URL RELIABILITY_RESULTS=$(CURDIR)/$(RESULTS)/sqlite.jsonl $(run_pytest)

test-postgres: $(VENV)/.dev rowhash
	@if $(BIN)/python -c "import sys, psycopg; psycopg.connect(sys.argv[1].rsplit('/', 1)[0] + '/postgres', connect_timeout=3).close()" '$(PG_URL)' 2>/dev/null; then \
		echo "=== Test suite on PostgreSQL ($(PG_URL)) ==="; \
		mkdir -p $(RESULTS) && rm -f $(RESULTS)/postgresql.jsonl; \
		DATABASE_URL=$(PG_URL) RELIABILITY_RESULTS=$(CURDIR)/$(RESULTS)/postgresql.jsonl $(run_pytest); \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL at $(PG_URL) is unreachable and CI=true: failing. Start it with: pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start" >&2; exit 1; \
	else \
		echo "" >&2; \
		echo "!!! PostgreSQL at $(PG_URL) is unreachable: SKIPPING the PostgreSQL run. !!!" >&2; \
		echo "!!! Start it with: pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start" >&2; \
		echo "" >&2; \
	fi

# Every run leaves the reliability suite's results table in var/reliability/RELIABILITY.md.
test: lint test-sqlite test-postgres
	$(BIN)/python -m tests.reliability.render $(RESULTS)/*.jsonl > $(RESULTS)/RELIABILITY.md

# Run only the reliability suite on both databases and publish its table in docs/RELIABILITY.md.
reliability: $(VENV)/.dev
	$(MAKE) test-sqlite test-postgres PYTEST_ARGS="tests/reliability $(PYTEST_ARGS)"
	$(BIN)/python -m tests.reliability.render $(RESULTS)/*.jsonl > docs/RELIABILITY.md

# Refresh the README's screenshots from the browser tests.
screenshots: $(VENV)/.dev chromium
	E2E_SCREENSHOT_DIR=docs/screenshots $(BIN)/pytest tests/e2e -q

# Every benchmark (not part of `make test`): `make bench [BENCH_ROWS=1000000] [BENCH_ONLY=admin,...]`
# generates BENCH_ROWS documents with history into scratch databases (var/bench/*.sqlite3 and,
# when BENCH_PG_SERVER is reachable, the PostgreSQL databases deploysafe_int, deploysafe_bench_small,
# deploysafe_bench_ds and deploysafe_bench_mode, whose documents rows it replaces), prints one BENCH line
# per measurement (ours vs its baseline, alternating, median) and a summary of the goals met or
# missed, writes the lines to var/bench/<engine>.txt, and exits 1 if a goal was missed.
# `$(BIN)/python benchmarks/run.py --table` turns the last run into benchmarks/RESULTS.md's tables.
BENCH_ROWS ?= 1000000
BENCH_ONLY ?=
BENCH_PG_SERVER ?= postgres://postgres@127.0.0.1:5432

bench: $(VENV)/.dev rowhash
	$(BIN)/python benchmarks/run.py --rows $(BENCH_ROWS) --pg-url $(BENCH_PG_SERVER) $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

# The per-area benchmarks that `make bench` runs, one at a time.
# Deploy mode's cost while off: SQLite by default, or BENCH_DATABASE_URL.
bench-deploy-mode: $(VENV)/.dev rowhash
	$(BIN)/python benchmarks/bench_deploy_mode.py

# The integrity tools against hand-written SQL: generates BENCH_ROWS documents with history in
# var/bench-integrity.sqlite3 and in BENCH_PG_URL, replacing every documents row in them.
BENCH_PG_URL ?= postgres://postgres@127.0.0.1:5432/deploysafe_int

bench-integrity: $(VENV)/.dev rowhash
	@echo "=== Integrity benchmark on SQLite, $(BENCH_ROWS) rows ==="
	DJANGO_ENV=test DATABASE_URL=sqlite:///$(CURDIR)/var/bench-integrity.sqlite3 \
		$(BIN)/python benchmarks/bench_integrity.py --rows $(BENCH_ROWS)
	@echo "=== Integrity benchmark on PostgreSQL ($(BENCH_PG_URL)), $(BENCH_ROWS) rows ==="
	@$(BIN)/python -c "import psycopg; c = psycopg.connect('$(BENCH_PG_URL:/deploysafe_int=/postgres)', autocommit=True); \
		c.execute('CREATE DATABASE deploysafe_int') if not c.execute(\"SELECT 1 FROM pg_database WHERE datname = 'deploysafe_int'\").fetchone() else None"
	DJANGO_ENV=test DATABASE_URL=$(BENCH_PG_URL) $(BIN)/python benchmarks/bench_integrity.py --rows $(BENCH_ROWS)

# deploy_safe and backup_db against pg_dump / sqlite3 .backup and a bare migrate:
# fills var/bench-deploy-safe.sqlite3 and BENCH_DS_PG_URL with BENCH_ROWS documents.
BENCH_DS_PG_URL ?= postgres://postgres@127.0.0.1:5432/deploysafe_bds

bench-deploy-safe: $(VENV)/.dev rowhash
	@echo "=== deploy_safe benchmark on SQLite, $(BENCH_ROWS) rows ==="
	DJANGO_ENV=test BENCH_ROWS=$(BENCH_ROWS) DATABASE_URL=sqlite:///$(CURDIR)/var/bench-deploy-safe.sqlite3 \
		$(BIN)/python benchmarks/bench_deploy_safe.py
	@echo "=== deploy_safe benchmark on PostgreSQL ($(BENCH_DS_PG_URL)), $(BENCH_ROWS) rows ==="
	@$(BIN)/python -c "import psycopg; c = psycopg.connect('$(BENCH_DS_PG_URL:/deploysafe_bds=/postgres)', autocommit=True); \
		c.execute('CREATE DATABASE deploysafe_bds') if not c.execute(\"SELECT 1 FROM pg_database WHERE datname = 'deploysafe_bds'\").fetchone() else None"
	DJANGO_ENV=test BENCH_ROWS=$(BENCH_ROWS) DATABASE_URL=$(BENCH_DS_PG_URL) $(BIN)/python benchmarks/bench_deploy_safe.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache deployguard/_rowhash.*.so
