# Two commands do all the set-up on a fresh machine:
#   make demo   synthesize data -> build a model -> save/load its checkpoint -> edgeseg info
#   make test   the test suite (what CI runs)
# Both create .venv and install edgeseg with the extras they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := runs/demo

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,export,dev]"
	touch $@

demo: setup
	$(BIN)/edgeseg data synth --out datasets/synth
	$(BIN)/python -c "import edgeseg, yaml; \
names = yaml.safe_load(open('datasets/synth/data.yaml'))['names']; \
print('saved', edgeseg.Model('yolo11n-seg.yaml', names=names).save('$(DEMO)/yolo11n-seg-synth.pt'))"
	$(BIN)/edgeseg info $(DEMO)/yolo11n-seg-synth.pt --imgsz 320

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs datasets
