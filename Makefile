# Krika developer entry points: `make up` runs the whole system, `make test` tests all of it.
# Nothing needs installing by hand: `sync` bootstraps uv from PyPI and installs the workspace.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else the PyPI package (`python3 -m uv`), which the `uv` target installs.
ifeq ($(origin UV),undefined)
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
endif
RUN := $(UV) run --no-sync
PYTEST_ARGS ?=

# Every workspace package with its own tests/ (services join by having a pyproject.toml).
PACKAGES := libs/common $(patsubst %/pyproject.toml,%,$(sort $(wildcard services/*/pyproject.toml))) gateway
# Linted folders that hold Python code (mypy refuses an empty one). Alembic's generated
# revisions are left out of mypy as ruff's config leaves them out of ruff.
LINT_PATHS := $(foreach d,libs services gateway bench scripts tests,$(if $(shell find $(d) -name '*.py' -print -quit 2>/dev/null),$(d)))
# mypy checks one package at a time: each has a `tests` package of its own, and the others are
# found installed (editable) in .venv, as at run time. The root tests and bench also import the
# launcher (scripts/krika_dev: tests/system.py runs its plan), and bench the tests' helpers.
MYPY_UNITS := $(PACKAGES) $(foreach d,bench scripts tests,$(if $(shell find $(d) -name '*.py' -print -quit 2>/dev/null),$(d)))

# Coverage (`make test`): every pytest run is measured by coverage.py, with branch coverage
# (.coveragerc), over the packages it tests: <pkg>/src/<module> for a package (libs/common:
# krika_common, services/<svc>: <svc>, gateway: gateway), all of them for the root tests/. It is
# `coverage run -m pytest` rather than pytest-cov's `pytest --cov`: pytest imports krika_common's
# plugin (a pytest11 entry point) before pytest-cov starts measuring, so the import-time lines of
# the modules the plugin imports (config, server, auth...) went uncounted: libs/common showed 65%
# for 82%. Each run keeps its data (COVERAGE_FILE) and reports (html/, coverage.json) in
# build/coverage/<run>/; scripts/coverage_totals.py prints the totals at the end.
COV_DIR := $(CURDIR)/build/coverage
comma := ,
space := $(subst ,, )
# coverage's --source for some packages: their src/<module> folders, comma-separated.
cov_source = $(subst $(space),$(comma),$(strip \
	$(patsubst %/__init__.py,$(CURDIR)/%,$(wildcard $(addsuffix /src/*/__init__.py,$(1))))))
# $(call pytest_run,<run>,<folder>,<packages>): <folder>'s tests under coverage of <packages>, then
# the run's reports; a failed run (exit code other than 0 and 5, "no tests collected") joins $failed.
pytest_run = \
	(cd $(2) && export COVERAGE_FILE=$(COV_DIR)/$(1)/.coverage COVERAGE_RCFILE=$(CURDIR)/.coveragerc; \
		$(RUN) coverage run --source=$(call cov_source,$(3)) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
		{ $(RUN) coverage combine -q && $(RUN) coverage html -q -d $(COV_DIR)/$(1)/html \
			&& $(RUN) coverage json -q -o $(COV_DIR)/$(1)/coverage.json; } \
			|| echo "=== $(1): no coverage report"; \
		exit $$rc); \
	rc=$$?; if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then failed="$$failed $(1)"; fi

.PHONY: help uv sync infra up demo migrate test lint format clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

uv: ## make sure uv is available (installed from PyPI when missing)
	@$(UV) --version >/dev/null 2>&1 || { \
		echo "uv not found: installing it with pip"; \
		python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv; \
	}

sync: uv ## install the workspace (every package + dev tools) into .venv from uv.lock
	@if [ -f uv.lock ]; then $(UV) sync --all-packages --locked; else $(UV) sync --all-packages; fi

infra: sync ## check PostgreSQL, Redis and RabbitMQ answer; start a stopped local one
	@$(RUN) python scripts/dev.py ensure-infra

up: sync ## run every service, worker and the gateway with their logs, until Ctrl-C
	@$(RUN) python scripts/dev.py up

demo: sync ## the marketplace's happy path, step by step, against a running `make up`
	@$(RUN) python scripts/demo.py

migrate: sync ## create the krika_<service> databases and run every migration
	@$(RUN) python scripts/dev.py migrate

test: sync infra ## run every package's tests, then the end-to-end `make up` test; coverage totals
	@rm -rf $(COV_DIR); failed=""; \
	$(foreach pkg,$(PACKAGES), \
		if find $(pkg)/tests \( -name 'test_*.py' -o -name '*_test.py' \) 2>/dev/null | grep -q .; then \
			echo "=== pytest $(pkg)"; $(call pytest_run,$(pkg),$(pkg),$(pkg)); \
		else echo "=== $(pkg): no tests, skipped"; fi;) \
	echo "=== pytest tests (end to end)"; $(call pytest_run,tests,.,$(PACKAGES)); \
	$(RUN) python scripts/coverage_totals.py $(COV_DIR) $(PACKAGES) tests; \
	if [ -n "$$failed" ]; then echo "=== FAILED:$$failed"; exit 1; fi; \
	echo "=== all tests passed"

lint: sync ## ruff check, ruff format --check and mypy --strict
	@status=0; \
	echo "=== ruff check"; $(RUN) ruff check $(LINT_PATHS) || status=1; \
	echo "=== ruff format --check"; $(RUN) ruff format --check $(LINT_PATHS) || status=1; \
	for unit in $(MYPY_UNITS); do \
		echo "=== mypy --strict $$unit"; \
		case $$unit in tests) extra=:scripts;; bench) extra=:scripts:tests;; *) extra=;; esac; \
		MYPYPATH=$$unit/src:$$unit$$extra $(RUN) mypy --strict --exclude '/migrations/versions/' $$unit \
			|| status=1; \
	done; \
	exit $$status

format: sync ## apply ruff's formatting and safe fixes
	@$(RUN) ruff format $(LINT_PATHS)
	@$(RUN) ruff check --fix $(LINT_PATHS)

clean: ## remove caches, coverage reports and launcher logs (keeps .venv and the dev secrets)
	@find . -path ./.venv -prune -o -type d \
		\( -name __pycache__ -o -name .pytest_cache -o -name .mypy_cache -o -name .ruff_cache \) \
		-prune -exec rm -rf {} +
	@rm -rf build dist .local/run

distclean: clean ## also remove .venv and .local/ (dev signing key, secrets, Mongo data)
	@rm -rf .venv .local
