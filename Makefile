# One virtual environment per checkout, made once and reused: torch alone is several GB.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# TORCH=cpu: PyTorch's CPU-only wheels from download.pytorch.org. The default wheels from PyPI bring
# about 4 GB of CUDA libraries (nvidia-*, triton) this project never uses; the venv is then ~6 GB.
TORCH ?= default
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: run test test-no-browser data browser clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(if $(filter cpu,$(TORCH)),$(PY) -m pip install torch torchvision --index-url $(TORCH_CPU_INDEX))
	$(PY) -m pip install -e ".[test,ray]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m benchmark run

test: $(STAMP) browser
	$(PY) -m pytest -q

# The whole suite except the page tests (marked `browser`: they need Debian's chromium), knowingly.
test-no-browser: $(STAMP)
	$(PY) -m pytest -q -m "not browser"

# The page tests open report.html and study.html in Debian's headless Chromium (no browser download).
# Before touching the system, say what is installed and why, and how to do without.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "make test: the page tests open the reports in a headless browser, so this installs Debian's"; \
		echo "  chromium and chromium-driver now (apt-get update + install, ~500 MB, as root or through sudo)."; \
		echo "  To run every other test without them instead: make test-no-browser"; \
		$(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

data: $(STAMP)
	$(PY) -m benchmark data

clean-venv:
	rm -rf $(VENV)
