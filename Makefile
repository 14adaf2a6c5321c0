# Two commands do all the set-up on a fresh machine:
#   make demo   synthesize data -> fine-tune the shipped synthetic-data yolo11n-seg briefly -> validate ->
#               predict -> bench every target (TFLite too: it prepares the converter venv), ending with the
#               model's mask mAP50 and what each format kept of it
#   make test   the test suite (what CI runs)
# Both create .venv and install edgeseg with the extras they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := runs/demo
DEMO_EPOCHS ?= 3
# yolo11n-seg trained here on synthetic data (make demo-weights; weights/README.md says how)
DEMO_START ?= weights/yolo11n-seg-synth320.pt

.PHONY: setup demo demo-tflite demo-weights test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[train,export,dev,openvino,coreml,ncnn-export,executorch]"
	touch $@

demo: setup demo-tflite
	$(BIN)/edgeseg data synth --out datasets/synth
	$(BIN)/edgeseg info $(DEMO_START) --no-layers
	$(BIN)/edgeseg train --model $(DEMO_START) --data datasets/synth/data.yaml --epochs $(DEMO_EPOCHS) --imgsz 320 --batch 16 \
		--project $(DEMO) --name train --exist-ok
	$(BIN)/edgeseg val $(DEMO)/train/weights/best.pt --data datasets/synth/data.yaml
	$(BIN)/edgeseg predict $(DEMO)/train/weights/best.pt datasets/synth/images/val --project $(DEMO) --name predict --exist-ok --save-txt
	$(BIN)/edgeseg bench $(DEMO)/train/weights/best.pt --data datasets/synth/data.yaml --targets all --calib 64 \
		--project $(DEMO) --name bench --exist-ok

# The TFLite rows of the demo's bench: the onnx2tf converter venv and the LiteRT interpreter. Without
# PyPI this step fails quietly and the bench's TFLite rows say what to install.
demo-tflite: setup
	-test -x $(TFLITE_VENV)/bin/python || ($(PYTHON) -m venv $(TFLITE_VENV) && $(TFLITE_VENV)/bin/pip install --quiet --disable-pip-version-check "onnx2tf==1.29.24") || rm -rf $(TFLITE_VENV)
	-$(BIN)/pip install --quiet --disable-pip-version-check -e ".[tflite]"

# make demo-weights   remake weights/yolo11n-seg-synth320.pt: yolo11n-seg from its YAML, 35 epochs at 320 on
#                     1024 synthetic images of seed 1 (the demo validates on seed 0's val images, never seen)
demo-weights: setup
	$(BIN)/edgeseg data synth --out datasets/synth-ship --train 1024 --val 64 --seed 1
	$(BIN)/edgeseg train --data datasets/synth-ship/data.yaml --epochs 35 --imgsz 320 --batch 16 \
		--project runs/ship --name train --exist-ok
	cp runs/ship/train/weights/best.pt $(DEMO_START)

test: setup
	$(BIN)/python -m pytest -q

# make layers   the import contract (.importlinter): layer order, a torch-free runtime, no cycles
.PHONY: layers

layers: setup
	VENV=$(VENV) .ci/layers

# make device-wheels   the device install (base and [tflite]) resolves to binary wheels on aarch64 Linux
#                      (cp310 Jetson, cp311 Pi) and macOS arm64 (cp310, cp311); resolution only, needs PyPI
.PHONY: device-wheels

device-wheels: setup
	$(BIN)/python .ci/device_wheels.py

# make runtime-check   export an ONNX model with .venv, then predict, track and val it in .venv-runtime:
#                      the base install (no extras), where torch must not be importable; then the
#                      same for an OpenVINO export with edgeseg[openvino] added
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
	$(BIN)/edgeseg export $(RUNTIME_CHECK)/yolo11n-seg.pt --target openvino --imgsz 160
	$(RUNTIME_VENV)/bin/pip install --quiet --disable-pip-version-check ".[openvino]"
	@if $(RUNTIME_VENV)/bin/python -c "import torch" 2>/dev/null; then \
		echo "error: torch is importable in $(RUNTIME_VENV) after installing edgeseg[openvino]"; exit 1; fi
	$(RUNTIME_VENV)/bin/python tests/runtime_only_check.py $(RUNTIME_CHECK)/yolo11n-seg_openvino_model

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) runs datasets

# make tflite-check   export a .tflite with the onnx2tf converter venv, then load, predict and check
#                     its op list (no Flex op) in a venv with ai-edge-litert and neither torch nor TensorFlow;
#                     then read Ultralytics' genuine LiteRT export (tests that need ai-edge-litert in .venv)
TFLITE_VENV ?= .venv-tflite
TFLITE_RUNTIME_VENV ?= .venv-tflite-runtime
TFLITE_CHECK := runs/tflite-check

.PHONY: tflite-check

tflite-check: setup
	test -x $(TFLITE_VENV)/bin/python || ($(PYTHON) -m venv $(TFLITE_VENV) && $(TFLITE_VENV)/bin/pip install --quiet --disable-pip-version-check "onnx2tf==1.29.24")
	rm -rf $(TFLITE_RUNTIME_VENV)
	$(PYTHON) -m venv $(TFLITE_RUNTIME_VENV)
	$(TFLITE_RUNTIME_VENV)/bin/pip install --quiet --disable-pip-version-check ".[tflite]"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[tflite]"
	$(BIN)/python -c "import edgeseg; from edgeseg.data.synth import CLASS_NAMES; \
	print('saved', edgeseg.Model('yolo11n-seg.yaml', names=list(CLASS_NAMES)).save('$(TFLITE_CHECK)/yolo11n-seg.pt'))"
	EDGESEG_TFLITE_PYTHON=$(TFLITE_VENV)/bin/python $(BIN)/edgeseg export $(TFLITE_CHECK)/yolo11n-seg.pt --target tflite --imgsz 160
	$(TFLITE_RUNTIME_VENV)/bin/python -c "import sys, importlib.util as u; \
	bad = [m for m in ('torch', 'tensorflow') if u.find_spec(m)]; sys.exit(f'error: {bad} importable') if bad else None; \
	from edgeseg.runtimes.backends.tflite_flatbuffer import operator_names; \
	ops = operator_names(open('$(TFLITE_CHECK)/yolo11n-seg.tflite', 'rb').read()); \
	flex = [o for o in ops if o.startswith('Flex')]; sys.exit(f'error: Flex ops {flex}') if flex else print(len(ops), 'builtin op codes')"
	$(TFLITE_RUNTIME_VENV)/bin/python tests/runtime_only_check.py $(TFLITE_CHECK)/yolo11n-seg.tflite
	$(BIN)/python -m pytest -q tests/runtimes/test_plain_keys.py -k tflite

# make rknn-venv    the rknn-toolkit2 converter venv (.venv-rknn): rknn-toolkit2 pins numpy <= 1.26.4,
#                   onnx <= 1.18 and torch <= 2.4 (a CUDA build from PyPI); it needs torch only to import,
#                   so it gets the CPU torch edgeseg pins, and its other requirements, without pip's resolver;
#                   setuptools < 81 still has the pkg_resources it imports (torch 2.13 needs >= 77)
# make rknn-check   export fp16 and int8 RKNN folders, verified in rknn-toolkit2's simulator (the RKNN tests)
RKNN_VENV ?= .venv-rknn
RKNN_TOOLKIT := rknn-toolkit2==2.5.0
RKNN_REQUIREMENTS := "numpy<=1.26.4" "onnx>=1.16.1,<=1.18.0" onnxruntime "protobuf>=4.21.6,<=4.25.4" psutil \
	ruamel.yaml scipy tqdm opencv-python-headless fast-histogram "setuptools>=77,<81" torch==2.13.0

.PHONY: rknn-venv rknn-check

rknn-venv: $(RKNN_VENV)/.installed

$(RKNN_VENV)/.installed:
	$(PYTHON) -m venv $(RKNN_VENV)
	$(RKNN_VENV)/bin/pip install --quiet --disable-pip-version-check $(RKNN_REQUIREMENTS)
	$(RKNN_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps $(RKNN_TOOLKIT)
	$(RKNN_VENV)/bin/python -c "from rknn.api import RKNN"
	touch $@

rknn-check: setup rknn-venv
	EDGESEG_RKNN_PYTHON=$(RKNN_VENV)/bin/python $(BIN)/python -m pytest -q tests/targets/test_export_rknn.py
