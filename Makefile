# `make demo` and `make test` each create .venv and install the project first.
# TORCH_SPEC pins the CPU build that this machine installs from a local file;
# a GPU user overrides it, e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url ..."`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,diagnostics,distributed,pyro,jax,thrml,docs
BIN := $(VENV)/bin

.PHONY: demo test docs bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/ebm demo

test: install
	$(BIN)/ruff check boltzkit_cli.py ebm samplers estimators tests examples benchmarks
	$(BIN)/python -m pytest -q -n auto

docs: install
	$(BIN)/python docs/figures.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# every benchmark of docs/benchmarks.md, JSON records into benchmarks/results (MNIST=DIR for the
# AIS benchmarks' MNIST RBM; without it they train on enlarged digits)
bench: install
	$(BIN)/python benchmarks/run.py $(if $(MNIST),--mnist $(MNIST))

lint: install
	$(BIN)/ruff check boltzkit_cli.py ebm samplers estimators tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info site docs/figures
