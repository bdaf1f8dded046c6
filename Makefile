# The two commands a newcomer needs:  make demo   and   make test
# Both create .venv and install hwfarm (pinned by constraints.txt) the first time.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.hwfarm-installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: setup
	$(VENV)/bin/ruff check farm predictors nas compress tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/repeatability.py

clean:
	rm -rf $(VENV) nas-runs demo_models hwfarm.db hwfarm.db-wal hwfarm.db-shm hwfarm-dataset.csv hwfarm-predictors hwfarm-models
