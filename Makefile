# The two commands a new user needs:
#   make run   install, migrate, seed the demo and start web + Celery worker + beat
#   make test  run the whole test suite (PostgreSQL and Redis on 127.0.0.1 by default)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tollgate
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python -m config.devenv
	$(BIN)/python manage.py migrate --noinput
	-$(BIN)/python manage.py discover_providers
	$(BIN)/python manage.py seed_demo --port $(PORT)
	$(BIN)/python manage.py reset_metrics
	PATH="$(abspath $(BIN)):$$PATH" HOST=$(HOST) PORT=$(PORT) \
		$(BIN)/honcho start --procfile config/Procfile.dev --app-root . --port $(PORT) --env /dev/null || true

# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
chromium:
	@[ -x "$(CHROMIUM)" ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# Each run gets a fresh VAR_DIR (unless one is set), removed afterwards: usage journals and
# spool files a run leaves must not be replayed by a later run into another database.
test: install chromium
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@var="$${VAR_DIR:-}"; made=; if [ -z "$$var" ]; then var=$$(mktemp -d); made=1; fi; \
	VAR_DIR="$$var" CHROMIUM_PATH=$(CHROMIUM) DEBUG=true \
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" \
	REDIS_URL="$${REDIS_URL:-$(TEST_REDIS_URL)}" \
	PATH="$(abspath $(BIN)):$$PATH" \
	$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ -n "$$made" ]; then rm -rf "$$var"; fi; exit $$status

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
