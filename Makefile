# The one command menu. The README uses these targets; so does .ci/run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
comma := ,
# Parallel test workers (pytest-xdist); 'auto' = one per core.
WORKERS ?= auto

.PHONY: install demo test lint format messages clean run-web run-worker run-beat bench

# uv (from PyPI, into the venv) installs several times faster than pip; pip if it cannot.
define venv_install
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check uv 2>/dev/null \
		&& $(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[$(1)]' \
		|| $(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[$(1)]'
endef

# What the demo needs: the exchange and the local fake Stripe, none of the test tools.
$(VENV)/.demo-installed: pyproject.toml
	@echo "Installing the exchange into $(VENV) (the first time takes about a minute) …"
	$(call venv_install,demo)
	@touch $@

# Everything, test and type-checking tools included.
$(VENV)/.installed: pyproject.toml
	@echo "Installing the exchange and its test tools into $(VENV) (the first time: 1-3 minutes) …"
	$(call venv_install,dev)
	@touch $@ $(VENV)/.demo-installed

install: $(VENV)/.installed messages node_modules/.installed

# JavaScript the browser tests inject into pages (axe-core), from the npm registry;
# without npm the install goes on and the accessibility browser test fails, saying why.
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel error && touch $@; \
	else echo "npm not found: the accessibility test (tests/browser) needs it for axe-core"; fi

messages: $(VENV)/.demo-installed
	$(PY) manage.py compilemessages --verbosity 0 --ignore '.venv/*'

## Command 1: install, migrate, load demo data, serve on 127.0.0.1:$(PORT) with a live market
# The catalogues are compiled before the server's process starts: a process that
# loaded them before they existed would serve every Chinese page in English.
demo: $(VENV)/.demo-installed messages
	@echo "Starting the demo: database, demo data, node agents, a simulated market (about a minute) …"
	@$(PY) manage.py demo --port $(PORT)

## Command 2: the whole test suite (lint, migrations check, import contracts, types, pytest)
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run --verbosity 0
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Production-like processes (set DATABASE_URL and REDIS_URL first; see README)
run-web: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(VENV)/bin/gunicorn config.wsgi --bind 127.0.0.1:$(PORT) --workers 2 --access-logfile -

# QUEUES: which queues this pool consumes (all by default; one pool per queue in production)
QUEUES ?= matching,telemetry,billing,payments,payouts,celery
CONCURRENCY ?= 2
run-worker: install
	$(VENV)/bin/celery -A config worker --loglevel INFO --concurrency $(CONCURRENCY) --queues $(QUEUES) -n $(firstword $(subst $(comma), ,$(QUEUES)))@%h

run-beat: install
	$(VENV)/bin/celery -A config beat --loglevel INFO

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles node_modules
