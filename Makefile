# Two commands set up everything on a fresh machine:
#   make demo   create .venv, install, run `cf2neuro demo`
#   make test   create/update .venv, run the whole test suite
# On a GPU machine pick the torch build you want: make demo TORCH=torch==2.5.1
PYTHON ?= python3
TORCH  ?= torch==2.13.0
VENV   := .venv
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
# The peers that pin nir 1.0.4 (Sinabs, Rockpool), in a venv of their own: the live
# interop tests (tests/peers/) run them, tests/test_nir_compat.py reads files with nir 1.0.4.
# snnTorch and Norse (nir 1.0.8) live in the main venv.
VENVP  := .venv-peers
STAMPP := $(VENVP)/.installed

.PHONY: demo demo-xylo test venv venv-peers clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "cf2neuro needs Python >= 3.10")'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	echo "$(TORCH)" > $(VENV)/constraints.txt  # no package may pull another torch
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -c $(VENV)/constraints.txt -e '.[test,onnx]'
	$(PIP) install --quiet -c $(VENV)/constraints.txt --no-deps spikingjelly==2.0.0
	$(PIP) install --quiet -c $(VENV)/constraints.txt --no-deps neurobench==2.3.0
	$(PIP) install --quiet -c $(VENV)/constraints.txt --no-deps norse==1.1.0  # its other deps are ours
	touch $(STAMP)

venv-peers: $(STAMPP)

$(STAMPP): Makefile
	test -x $(VENVP)/bin/python || $(PYTHON) -m venv $(VENVP)
	echo "$(TORCH)" > $(VENVP)/constraints.txt
	$(VENVP)/bin/pip install --quiet "$(TORCH)"
	$(VENVP)/bin/pip install --quiet -c $(VENVP)/constraints.txt nir==1.0.4 sinabs==3.1.3 \
		rockpool==3.1.0 h5py
	touch $(STAMPP)

demo: $(STAMP)
	$(VENV)/bin/cf2neuro demo

# The Xylo demo: train for Xylo on the embedded temporal task, verify on XyloSim, energy.
demo-xylo: $(STAMP)
	$(VENV)/bin/cf2neuro train --data digits-rows --timesteps 8 --target xylo \
		--model-option 'hidden=[64]' --epochs 30 --out runs/xylo --quiet
	$(VENV)/bin/cf2neuro verify runs/xylo --target xylo --data digits-rows --runner xylosim \
		--report runs/v-xylo
	$(VENV)/bin/cf2neuro energy runs/xylo --target xylo --data digits-rows --report runs/e-xylo \
		--quiet

test: $(STAMP) $(STAMPP)
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) $(VENVP) cf2neuro-demo .pytest_cache
