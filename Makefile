# One virtual environment per checkout, made once and reused: torch alone is several GB.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test data browser clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,ray]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m benchmark run

test: $(STAMP) browser
	$(PY) -m pytest -q

# The page tests open report.html and study.html in Debian's headless Chromium (no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

data: $(STAMP)
	$(PY) -m benchmark data

clean-venv:
	rm -rf $(VENV)
