# One virtual environment per checkout, made once and reused: torch alone is several GB.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test data clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m benchmark run

test: $(STAMP)
	$(PY) -m pytest -q

data: $(STAMP)
	$(PY) -m benchmark data

clean-venv:
	rm -rf $(VENV)
