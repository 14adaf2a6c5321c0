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

# make runtime-check   export an ONNX model with .venv, then predict and val it in .venv-runtime:
#                      the base install (no extras), where torch must not be importable
RUNTIME_VENV ?= .venv-runtime
RUNTIME_CHECK := runs/runtime-check

.PHONY: runtime-check

runtime-check: setup
	rm -rf $(RUNTIME_VENV)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --disable-pip-version-check .
	@if $(RUNTIME_VENV)/bin/python -c "import torch" 2>/dev/null; then \
		echo "error: torch is importable in the runtime-only install $(RUNTIME_VENV)"; exit 1; fi
	$(BIN)/python -c "import edgeseg; from edgeseg.data.synth import CLASS_NAMES; \
	print('saved', edgeseg.Model('yolo11n-seg.yaml', names=list(CLASS_NAMES)).save('$(RUNTIME_CHECK)/yolo11n-seg.pt'))"
	$(BIN)/edgeseg export $(RUNTIME_CHECK)/yolo11n-seg.pt --imgsz 160
	$(RUNTIME_VENV)/bin/python tests/runtime_only_check.py $(RUNTIME_CHECK)/yolo11n-seg.onnx

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) runs datasets
