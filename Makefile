# Two commands set up everything on a fresh machine:
#   make demo   create .venv, install, run `cf2neuro demo`
#   make test   create/update .venv, run the whole test suite
# On a GPU machine pick the torch build you want: make demo TORCH=torch==2.5.1
PYTHON ?= python3
TORCH  ?= torch==2.13.0
VENV   := .venv
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# nir 1.0.4, what Sinabs and Rockpool pin, in a venv of its own:
# tests/test_nir_compat.py reads cf2neuro's NIR files with it
VENV104  := .venv-nir104
STAMP104 := $(VENV104)/.installed

.PHONY: demo test venv venv-nir104 clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "cf2neuro needs Python >= 3.10")'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	echo "$(TORCH)" > $(VENV)/constraints.txt  # no package may pull another torch
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -c $(VENV)/constraints.txt -e '.[test,onnx]'
	$(PIP) install --quiet -c $(VENV)/constraints.txt --no-deps spikingjelly==2.0.0
	$(PIP) install --quiet -c $(VENV)/constraints.txt --no-deps neurobench==2.3.0
	touch $(STAMP)

venv-nir104: $(STAMP104)

$(STAMP104): Makefile
	test -x $(VENV104)/bin/python || $(PYTHON) -m venv $(VENV104)
	$(VENV104)/bin/pip install --quiet nir==1.0.4 numpy h5py
	touch $(STAMP104)

demo: $(STAMP)
	$(VENV)/bin/cf2neuro demo

test: $(STAMP) $(STAMP104)
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) $(VENV104) cf2neuro-demo .pytest_cache
