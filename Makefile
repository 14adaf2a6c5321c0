# Two commands do all the set-up on a fresh machine:
#   make demo   synthesize data -> train yolo11n-seg briefly -> validate -> predict
#   make test   the test suite (what CI runs)
# Both create .venv and install edgeseg with the extras they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := runs/demo
DEMO_EPOCHS ?= 10

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,export,dev]"
	touch $@

demo: setup
	$(BIN)/edgeseg data synth --out datasets/synth
	$(BIN)/edgeseg info yolo11n-seg.yaml --no-layers --imgsz 320
	$(BIN)/edgeseg train --data datasets/synth/data.yaml --epochs $(DEMO_EPOCHS) --imgsz 320 --batch 16 \
		--project $(DEMO) --name train --exist-ok
	$(BIN)/edgeseg val $(DEMO)/train/weights/best.pt --data datasets/synth/data.yaml
	$(BIN)/edgeseg predict $(DEMO)/train/weights/best.pt datasets/synth/images/val --project $(DEMO) --name predict --save-txt

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs datasets
