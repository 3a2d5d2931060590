# Two entry points: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,redis,celery]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/wirehub serve $(ARGS)

test: $(STAMP)
	./scripts/ensure-system-deps
	# The official AsyncAPI JSON Schemas (npm @asyncapi/specs, pinned) for tests/integration/test_asyncapi.py.
	./scripts/ensure-asyncapi-specs
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/lint-imports
	$(BIN)/mypy

	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory docs
	# Each extra installed alone in a fresh venv from a wheel of this tree (about a minute).
	$(BIN)/python scripts/check-extras

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/fanout.py $(ARGS)

# The docs site in build/site (docs/*.md, docs/api.md from the docstrings), built strict: a
# `:::` path that does not resolve, a link to a missing page or anchor, or a public member
# of the API page without a docstring fails it. About 8 s; `make test` runs it.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

.PHONY: docs
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
