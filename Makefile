# The two commands a newcomer needs: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format docs bench clean-venv screenshots chromium

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
