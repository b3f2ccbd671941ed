# Two entry points: `make reproduce` (the whole study on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
CORES  ?= all

.PHONY: install reproduce report test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
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
	$(PY) -m snakemake --lint

clean:
	rm -rf results .snakemake
