# Two commands from a fresh clone (only Python 3.11 needed): `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CHROMIUM ?= /usr/bin/chromium

.PHONY: install run test test-faults test-fast lint format typecheck bench browser js-tests clean vendor-js

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Start everything (embedded Redis, demo LLM if no key, Celery worker, daphne) on 127.0.0.1:8000.
run: install
	$(PY) manage.py runstack

## Browser tests need Chromium from Debian's packages (never `playwright install`).
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed; browser tests will be skipped"; \
	  else echo "chromium not found at $(CHROMIUM); browser tests will be skipped"; fi; \
	fi

## The npm packages some tests run (the AI SDK's own validators), from the committed lockfile.
js-tests:
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error) \
	    || echo "npm ci failed in tests/js; the tests that need the ai package will be skipped"; \
	else echo "node/npm not found; the tests that need the ai package (tests/js) will be skipped"; fi

## The whole suite: real Redis (embedded unless REDIS_URL), SQLite or DATABASE_URL, real processes.
test: install browser js-tests
	$(PY) -m pytest $(PYTEST_ARGS)

## The fault suite (tests/faults): production profile on a PostgreSQL cluster and a Redis it creates
## itself (pg_createcluster, root), two daphne and two Celery workers; kills and restarts them.
test-faults: install
	COPILOT_FAULTS=1 $(PY) -m pytest tests/faults -m faults $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install
	$(VENV)/bin/mypy chat billing ratelimits copilot_site

## Benchmarks print numbers; they assert nothing.
bench: install
	@for m in $$(ls tests/bench/bench_*.py 2>/dev/null | sed 's#/#.#g; s#\.py$$##'); do \
	  echo "== $$m"; $(PY) -m $$m || exit 1; done

## Re-fetch the vendored front-end libraries from the npm registry into static/vendor/ (committed:
## the site serves those files as they are, so nothing is installed at run time).
MARKED_VERSION ?= 18.2.1
DOMPURIFY_VERSION ?= 3.4.18
vendor-js:
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && npm pack --silent marked@$(MARKED_VERSION) dompurify@$(DOMPURIFY_VERSION) >/dev/null); \
	  mkdir -p "$$tmp/marked" "$$tmp/dompurify" static/vendor/marked static/vendor/dompurify; \
	  tar -xzf "$$tmp/marked-$(MARKED_VERSION).tgz" -C "$$tmp/marked"; \
	  tar -xzf "$$tmp/dompurify-$(DOMPURIFY_VERSION).tgz" -C "$$tmp/dompurify"; \
	  cp "$$tmp/marked/package/lib/marked.esm.js" "$$tmp/marked/package/LICENSE" static/vendor/marked/; \
	  cp "$$tmp/dompurify/package/dist/purify.min.js" "$$tmp/dompurify/package/LICENSE" \
	     "$$tmp/dompurify/package/LICENSE-MPL" static/vendor/dompurify/; \
	  echo "vendored marked $(MARKED_VERSION) and dompurify $(DOMPURIFY_VERSION) into static/vendor/"

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .mypy_cache .ruff_cache tests/js/node_modules
