# sharpdarts: `make demo` and `make test` do all set-up (they create .venv on first use).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARPDARTS := $(VENV)/bin/sharpdarts
STAMP := $(VENV)/.installed
# The torch / torchvision pair this project is tested with.
TORCH := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2

.PHONY: install test demo
install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
