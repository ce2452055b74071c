# agentloop: `make run` to set up and start the app, `make test` to run every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_TEST_URL ?= redis://127.0.0.1:6379/0

.PHONY: run install harness-cli test test-sqlite test-postgres test-production screenshots bench lint images test-images

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The harness CLIs (codex, opencode, gemini), pinned in harness-cli/package.json, into var/harness-cli.
harness-cli:
	harness-cli/install.sh

# Migrate, seed the demo (admin login, space, project, traces) and start web + worker.
run: install
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py setup_schedules
	DEBUG=1 $(PY) manage.py seed_demo
	DEBUG=1 $(PY) manage.py serve

# The whole suite on SQLite, then again on PostgreSQL; then the production pass.
test: test-sqlite test-postgres test-production

test-sqlite: install
	$(PY) -m pytest

test-postgres: install
	DATABASE_URL=$(PG_TEST_URL) $(PY) -m pytest

# The tests marked `production` on PostgreSQL + Redis (channel layer, q2 broker), two web processes.
test-production: install
	DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest -m production

# Retake docs/screenshots/*.png with the browser test (real Chromium, real sandbox).
screenshots: install
	AGENTLOOP_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest tests/test_browser.py tests/test_browser_claude_code.py

bench: install
	$(PY) benches/run.py

# The app and runner images with podman (root; deploy/images/build.sh, docs/deploy.md):
# a Debian base made with debootstrap unless BASE=… names one, a wheelhouse, the builds.
images: install
	PYTHON=$(PY) deploy/images/build.sh

# The runner image run from the Kubernetes provider's own Pod manifest against a live
# server (tests/test_images_podman.py). Building takes minutes: not part of `make test`.
test-images: images
	AGENTLOOP_TEST_RUNNER_IMAGE=localhost/agentloop-runner:dev $(PY) -m pytest -m images tests/test_images_podman.py

# ruff (lint + format) and the import contracts of pyproject.toml's [tool.importlinter]:
# the layers, a stdlib-only runner, no import cycles (docs/architecture.md).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
