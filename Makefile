# The two commands of the README. Each sets up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test vendor screenshots

# torch goes in first and pinned to the CPU build: a looser requirement from another
# package would otherwise pull the CUDA build (several GB).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/churnsignal demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The browser libraries the pages serve, from the exact npm releases package-lock.json pins
# (never a CDN): run after changing package.json, and commit what it copies.
ECHARTS := webhook/static/vendor/echarts
vendor:
	npm ci --no-audit --no-fund
	mkdir -p $(ECHARTS)
	cp node_modules/echarts/dist/echarts.min.js node_modules/echarts/LICENSE node_modules/echarts/NOTICE $(ECHARTS)/

# The browser tests, keeping their screenshots for docs/qa.md and docs/agents.md. Chinese
# needs a CJK font on the machine (Debian: apt-get install fonts-noto-cjk), or it shows as boxes.
screenshots: $(VENV)/.installed
	CHURNSIGNAL_SCREENSHOTS=docs/images $(PY) -m pytest -q tests/test_qa_browser.py tests/test_badge_browser.py
