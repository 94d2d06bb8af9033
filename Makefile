# The two commands of the README. Each sets up a virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= got10k,vot,video,train,export,baselines,demo,test

.PHONY: demo test venv clean

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

venv: $(VENV)/.installed

# The whole job on the embedded default: the shipped demo model over the shipped benchmark.
demo: $(VENV)/.installed
	$(VENV)/bin/lorat demo --output lorat-demo

test: $(VENV)/.installed
	MPLBACKEND=Agg $(VENV)/bin/pytest

clean:
	rm -rf $(VENV) lorat-demo
