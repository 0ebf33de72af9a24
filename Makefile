# The two commands a newcomer needs: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test nbval lint format docs bench clean-venv screenshots chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The API server and the workbench page together; prints both addresses and a token.
run: $(STAMP)
	$(BIN)/python -m scanbatch.workbench.launch

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cog --check README.md

# Regenerate the README's settings table and command reference from the code.
docs: $(STAMP)
	$(BIN)/cog -r README.md

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(MAKE) --no-print-directory nbval)

# The three notebooks run as they ship, with their default parameters, cell by cell (nbval): the
# processing notebook on one sample record, the workbench showing its sign-in (no server: its
# address goes nowhere, and no token), the experiments on data/sample with the offline variant
# only. A cell tagged `nbval-check-output` must show what its stored output shows, after
# notebooks/nbval_sanitize.cfg. A clean environment (no GEMINI_API_KEY: never Google; no
# SCANBATCH_* of the caller's) and a fresh data folder each run: nothing carried over.
NBVAL_DATA := $(VENV)/nbval-data
NOTEBOOKS := notebooks/process_batch.ipynb notebooks/workbench.ipynb notebooks/experiments.ipynb
nbval: $(STAMP)
	rm -rf $(NBVAL_DATA) && mkdir -p $(NBVAL_DATA)
	env -i PATH="$$PATH" HOME="$$HOME" LANG=C.UTF-8 SCANBATCH_URL=http://127.0.0.1:9 \
	  SCANBATCH_DATA_DIR=$(abspath $(NBVAL_DATA)) $(BIN)/python -m pytest -p no:cacheprovider \
	  --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg $(NOTEBOOKS)

# The workbench's browser test drives Debian's chromium; it is never skipped. Installed here
# when we can (root with apt-get), otherwise `make test` stops with the command to run.
CHROMIUM ?= /usr/bin/chromium
CHROMIUM_INSTALL := apt-get update && apt-get install -y --no-install-recommends chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then $(CHROMIUM_INSTALL); \
	  else echo "The browser test needs chromium. Install it with:  sudo sh -c '$(CHROMIUM_INSTALL)'" >&2; exit 1; fi; }

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)

# The README's screenshots: the browser test with the offline OCR reader, writing into docs/.
screenshots: $(STAMP)
	SCANBATCH_BROWSER_EXTRACTOR=ocr SCANBATCH_SCREENSHOTS=docs $(BIN)/python -m pytest tests/test_browser_workbench.py -q
