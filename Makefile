# The two commands of the README. Each sets up a virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
EXTRAS ?= got10k,vot,video,train,export,openvino,baselines,demo,sam,app,test

.PHONY: demo test test-all venv clean

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	# vot-toolkit pulls opencv-python, whose cv2 can overwrite the contrib build's (CSRT/KCF live in contrib):
	# reinstall the contrib build last so `cv2` is the superset both need.
	if $(VENV)/bin/python -c "import importlib.metadata as m; m.version('opencv-python')" 2>/dev/null; then \
		$(PIP) install --quiet --force-reinstall --no-deps -c constraints.txt opencv-contrib-python-headless; fi
	touch $@

venv: $(VENV)/.installed

# The whole job on the embedded default: the shipped demo model over the shipped benchmark.
demo: $(VENV)/.installed
	$(VENV)/bin/lorat demo --output lorat-demo

# The fast suite: everything but the tests marked slow (over about 10 s each; see pytest.ini).
test: $(VENV)/.installed
	MPLBACKEND=Agg $(VENV)/bin/pytest -m "not slow"

# Every test, the slow end-to-end ones included (what CI runs: .ci/run).
test-all: $(VENV)/.installed
	MPLBACKEND=Agg $(VENV)/bin/pytest

clean:
	rm -rf $(VENV) lorat-demo
