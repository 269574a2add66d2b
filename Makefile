# Developer and CI entry points. A fresh clone needs only python3 (3.11+) and make:
#
#   make venv    create .venv and install the package with its dev tools
#   make test    run the test suite, with a throwaway PostgreSQL when the server is installed
#                (extra pytest arguments: make test PYTEST_ARGS='-k calendar -x')
#   make lint    ruff check, ruff format --check, mypy
#   make demo    run the command-line demo
#   make soak    the long adversarial runs (stateful, kill and multi-process), minutes each
#   make mutate  mutation testing of the deciding modules, then the score per module
#                (a subset: make mutate MUTANTS='nim_workflow._calendar*'); never in CI
#   make bench   the benchmarks, with a throwaway PostgreSQL; refreshes docs/benchmarks.md
#                (under 10 minutes on 2 cores); never in CI
#   make clean   remove the virtualenv, caches and build output

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp records when the environment was last installed: make re-installs only when
# pyproject.toml is newer, so repeated `make test` runs start at once.
STAMP := $(VENV)/.nim-workflow-installed
PYTEST_ARGS ?=

MUTANTS ?=

.PHONY: venv demo test lint soak mutate bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: venv
	$(BIN)/nim-workflow demo

# pytest's exit code 5 means it collected no tests; say so plainly, since a "green" run that
# tested nothing must not pass for a real one. The exit code is passed on either way.
test: venv
	@rc=0; tools/with-postgres.sh $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

# The long runs marked `soak` (deselected from `make test`), on SQLite and a throwaway PostgreSQL.
soak: venv
	NIM_WORKFLOW_SOAK=1 tools/with-postgres.sh $(BIN)/pytest -m soak -p no:cacheprovider $(PYTEST_ARGS)

# Mutation testing (pyproject's [tool.mutmut] names the modules and their tests); mutmut keeps
# its work in mutants/ and carries on where it stopped. The report is docs/testing.md's table.
mutate: venv
	$(BIN)/python -m pip install --quiet -e '.[dev,mutation]'
	@rc=0; $(BIN)/mutmut run --max-children 2 $(MUTANTS) || rc=$$?; \
	$(BIN)/python tools/mutation_report.py; exit $$rc

# The benchmarks (bench/README.md): every group on SQLite and a throwaway PostgreSQL, written to
# docs/benchmarks.md. Nothing asserts on time.
bench: venv
	tools/with-postgres.sh $(BIN)/python bench/run.py

# All three checks run even when one fails, so a single run shows every problem.
lint: venv
	@rc=0; \
	echo "$(BIN)/ruff check ."; $(BIN)/ruff check . || rc=1; \
	echo "$(BIN)/ruff format --check ."; $(BIN)/ruff format --check . || rc=1; \
	echo "$(BIN)/mypy"; $(BIN)/mypy || rc=1; \
	exit $$rc

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
