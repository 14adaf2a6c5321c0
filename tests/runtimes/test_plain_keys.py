"""Plain metadata keys (the YOLO ecosystem's encoding): written beside edgeseg's own, read from genuine Ultralytics exports.

The Ultralytics exports are the fixtures ``yolo11-seg-tiny-u8.4.190.onnx`` (``.tflite``,
``_openvino_model/``) and ``yolo26-seg-tiny-u8.4.190.onnx`` (``-end2end.onnx``,
``_openvino_model/``), made by Ultralytics 8.4.190 itself from the genuine checkpoints beside
them (``tests/fixtures/ultralytics/make_exports.py``).
"""

import ast
import importlib.util
import io
import json
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import edgeseg
from edgeseg.runtimes import ModelMeta, load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.plain_keys import meta_from_plain, plain_metadata, plain_strings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ultralytics"
GENUINE_PT = FIXTURES / "yolo11-seg-tiny-u8.4.190.pt"
GENUINE_ONNX = FIXTURES / "yolo11-seg-tiny-u8.4.190.onnx"
GENUINE_OPENVINO = FIXTURES / "yolo11-seg-tiny-u8.4.190_openvino_model"
GENUINE_TFLITE = FIXTURES / "yolo11-seg-tiny-u8.4.190.tflite"
YOLO26_PT = FIXTURES / "yolo26-seg-tiny-u8.4.190.pt"
YOLO26_END2END = FIXTURES / "yolo26-seg-tiny-u8.4.190-end2end.onnx"  # export(nms=False): its one-to-one top-k, (1, 300, 38)
NAMES = {0: "circle", 1: "rectangle", 2: "triangle", 3: "star", 4: "hexagon"}
IMGSZ = (128, 160)  # the non-square size the fixtures were exported at


def ultralytics_reads(values: dict) -> dict:
    """What Ultralytics 8.4's AutoBackend makes of string metadata: int() for three keys, a literal for the rest."""
    out = dict(values)
    for key, value in values.items():
        if key in {"stride", "batch", "channels"}:
            out[key] = int(value)
        elif key in {"imgsz", "names", "args", "end2end"}:
            out[key] = ast.literal_eval(value)
    return out


def test_plain_strings_read_as_ultralytics_reads_them():
    meta = ModelMeta(names={0: "a b", 1: "it's"}, imgsz=(320, 480), stride=32, batch=0, dynamic=True, precision="fp16")
    read = ultralytics_reads(plain_strings(meta))
    assert read["names"] == {0: "a b", 1: "it's"} and read["imgsz"] == [320, 480]
    assert (read["stride"], read["batch"], read["channels"], read["task"], read["end2end"]) == (32, 1, 3, "segment", False)
    assert read["args"]["dynamic"] is True and read["args"]["half"] is True and read["args"]["quantize"] == 16
    back = meta_from_plain(plain_strings(meta))
    assert (back.names, back.imgsz, back.stride, back.precision, back.dynamic) == (meta.names, (320, 480), 32, "fp16", True)
    assert meta_from_plain(plain_metadata(meta)).names == meta.names  # YAML/JSON values (not strings) read the same


def test_an_end2end_export_is_a_one_to_one_top_k():
    """Ultralytics writes end2end True for YOLO26 exported with nms=False: its graph keeps the max_det best scores, no NMS."""
    meta = meta_from_plain({"names": "{0: 'a'}", "imgsz": "[64, 64]", "end2end": "True", "args": "{'nms': False}"})
    assert (meta.selection, meta.topk, meta.end2end, meta.head_shape) == ("topk", 300, True, (2, 38))
    meta = meta_from_plain({"names": "{0: 'a'}", "imgsz": "[64, 64]", "end2end": True, "args": {"max_det": 100}})
    assert (meta.selection, meta.topk) == ("topk", 100)
    assert meta_from_plain(plain_metadata(meta)) == meta  # what edgeseg writes reads back the same


@pytest.mark.parametrize(
    "values, problem",
    [
        ({"names": "__import__('os').system('false')", "imgsz": "[64, 64]"}, "'names' is not a Python literal"),
        ({"names": "{0: 'a'}", "imgsz": "640x640"}, "'imgsz' is not a Python literal"),
        ({"names": "{'x': 'a'}", "imgsz": "[64, 64]"}, "is not 'class id: name'"),
        ({"names": "{0: 'a'}", "imgsz": "[64, 64, 3]"}, "not an integer or [height, width]"),
        ({"names": "{0: 'a'}", "imgsz": "[64, 64]", "stride": "'32'"}, "stride is '32', not an integer"),
        ({"names": "{0: 'a'}", "imgsz": "[64, 64]", "task": "pose"}, "edgeseg runs segmentation models"),
        ({"names": "{0: 'a'}", "imgsz": "[64, 64]", "args": "{'nms': True}"}, "is not supported without edgeseg metadata"),
        ({"names": "{0: 'a'}", "imgsz": "[64, 64]", "end2end": "True", "args": "{'max_det': 0}"}, "max_det is 0"),
        ({"names": "{0: 'a'}", "imgsz": "[99999, 64]"}, "imgsz 99999x64"),
        ({"names": "[['a']]", "imgsz": "[64, 64]"}, "is not 'class id: name'"),
        ({"names": "[" * 100_000 + "]" * 100_000, "imgsz": "[64, 64]"}, "'names' is not a Python literal"),
    ],
)
def test_bad_plain_metadata_is_refused(values, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("(", r"\(")):
        meta_from_plain(values)


def genuine_reference(batch: np.ndarray, checkpoint: Path = GENUINE_PT) -> tuple[np.ndarray, np.ndarray]:
    """edgeseg's import of the genuine checkpoint run on ``batch``: (preds, protos) float32."""
    model = edgeseg.Model(checkpoint)
    with torch.no_grad():
        preds, protos = model.net.float().eval()(torch.from_numpy(batch))
    return preds.numpy(), protos.numpy()


ARTIFACTS = [
    pytest.param(GENUINE_ONNX, GENUINE_PT, id="onnx"),
    pytest.param(GENUINE_OPENVINO, GENUINE_PT, id="openvino"),
    pytest.param(
        GENUINE_TFLITE, GENUINE_PT, id="tflite",
        marks=pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert (edgeseg[tflite])"),
    ),
    pytest.param(FIXTURES / "yolov8-seg-tiny-u8.4.190.onnx", FIXTURES / "yolov8-seg-tiny-u8.4.190.pt", id="yolov8-onnx"),
    pytest.param(FIXTURES / "yolov8-seg-tiny-u8.4.190_openvino_model", FIXTURES / "yolov8-seg-tiny-u8.4.190.pt", id="yolov8-openvino"),
    pytest.param(FIXTURES / "yolo26-seg-tiny-u8.4.190.onnx", YOLO26_PT, id="yolo26-onnx"),
    pytest.param(FIXTURES / "yolo26-seg-tiny-u8.4.190_openvino_model", YOLO26_PT, id="yolo26-openvino"),
    pytest.param(
        FIXTURES / "yolo26-seg-tiny-u8.4.190.tflite", YOLO26_PT, id="yolo26-tflite",
        marks=pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert (edgeseg[tflite])"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("artifact, checkpoint", ARTIFACTS)
def test_genuine_ultralytics_export_loads_with_its_names_and_size(artifact, checkpoint, caplog):
    """Plain (one-to-many) exports: detections picked by NMS, raw outputs equal to the checkpoint's."""
    runtime = load(artifact)
    assert runtime.meta.names == NAMES and runtime.meta.imgsz == IMGSZ and runtime.meta.stride == 32
    assert (runtime.meta.selection, runtime.meta.end2end) == ("nms", False)
    assert "using the output layout" not in caplog.text
    batch = np.random.RandomState(0).uniform(0, 1, (1, 3, *IMGSZ)).astype(np.float32)
    preds, protos = runtime.backend.infer(batch)
    ref_preds, ref_protos = genuine_reference(batch, checkpoint)
    np.testing.assert_allclose(preds[:, :4], ref_preds[:, :4], atol=1e-2)  # px
    np.testing.assert_allclose(preds[:, 4:], ref_preds[:, 4:], atol=1e-3)
    np.testing.assert_allclose(protos, ref_protos, atol=1e-3)
    image = (np.random.RandomState(1).uniform(0, 255, (200, 300, 3))).astype(np.uint8)
    (result,) = runtime.predict(image, conf=0.01)
    assert result.orig_shape == (200, 300) and result.names == NAMES


def test_genuine_yolo26_end2end_export_equals_the_checkpoint_on_its_one_to_one_branch(tmp_path):
    """Ultralytics' end-to-end YOLO26 ONNX (no edgeseg metadata) predicts what ``edgeseg predict --end2end`` gives on the .pt."""
    runtime = load(YOLO26_END2END)
    assert runtime.meta.names == NAMES and runtime.meta.imgsz == IMGSZ
    assert (runtime.meta.selection, runtime.meta.topk, runtime.meta.nms) == ("topk", 300, {})
    images = [(np.random.RandomState(seed).uniform(0, 255, (200, 300, 3))).astype(np.uint8) for seed in range(3)]
    artifact = runtime.predict(images, conf=0.01, stream=False)
    model = edgeseg.Model(YOLO26_PT)
    expected = model.predict(images, conf=0.01, imgsz=IMGSZ, end2end=True, stream=False)
    plain = model.predict(images, conf=0.01, imgsz=IMGSZ, stream=False)
    assert model.net.head.branch == "one2many"  # end2end=True ran a copy
    assert sum(map(len, expected)) >= 10
    assert [len(r) for r in expected] != [len(r) for r in plain]  # the two branches really differ here
    for ours, theirs in zip(artifact, expected):
        np.testing.assert_array_equal(ours.classes, theirs.classes)
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-2)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4)
        assert (ours.masks ^ theirs.masks).mean() < 1e-3


def test_own_metadata_is_read_before_plain_keys(tmp_path):
    """A file with both: edgeseg's JSON wins (here it renames the classes)."""
    model = onnx.load(str(GENUINE_ONNX))
    own = ModelMeta(names={i: f"own{i}" for i in range(5)}, imgsz=IMGSZ, outputs=["output0", "output1"])
    model.metadata_props.add(key="edgeseg", value=own.to_json())
    onnx.save(model, str(tmp_path / "both.onnx"))
    assert load(tmp_path / "both.onnx").meta.names == own.names


def test_hostile_plain_metadata_is_a_one_line_error(tmp_path):
    model = onnx.load(str(GENUINE_ONNX))
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = "__import__('os').system('touch pwned')"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(EdgesegError, match=r"bad\.onnx: unreadable plain metadata \('names' is not a Python literal") as info:
        load(tmp_path / "bad.onnx")
    assert "\n" not in str(info.value) and not (tmp_path / "pwned").exists()
    folder = shutil.copytree(GENUINE_OPENVINO, tmp_path / "bad_openvino_model")
    (folder / "metadata.yaml").write_text("- just\n- a list\n")
    with pytest.raises(EdgesegError, match=r"metadata\.yaml: not a YAML mapping"):
        load(folder)


def with_appended_zip(path, name: str, text: str) -> bytes:
    """The genuine file's bytes with one more ``name`` entry in its appended zip: readers take the last one of a name."""
    buffer = io.BytesIO(path.read_bytes())
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name" warning: the duplicate is the point
        archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs ai-edge-litert (edgeseg[tflite])")
@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("metadata.json", json.dumps({"names": "__import__('os').system('touch pwned')", "imgsz": [128, 160]}), "'names' is not a Python literal"),
        ("metadata.json", " " * (2 << 20), "metadata.json of 2097152 bytes"),
        ("metadata.json", "[1, 2]", "not a JSON object"),
        ("metadata.json", json.dumps({"names": ["a", "b"], "imgsz": [128, 160]}), "names 2 classes but the outputs hold 5"),
    ],
    ids=["code", "huge", "list", "wrong_nc"],
)
def test_hostile_tflite_plain_metadata_is_a_one_line_error(tmp_path, monkeypatch, name, text, problem):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.tflite").write_bytes(with_appended_zip(GENUINE_TFLITE, name, text))
    with pytest.raises(EdgesegError, match=r"bad\.tflite: .*" + re.escape(problem)) as info:
        load(tmp_path / "bad.tflite")
    assert "\n" not in str(info.value) and not (tmp_path / "pwned").exists()


def test_genuine_ultralytics_onnx_on_the_openvino_engine():
    """OpenVINO exposes an ONNX file's metadata_props as rt_info["framework"]: the plain keys are read there too."""
    runtime = load(GENUINE_ONNX, engine="openvino")
    assert runtime.backend.name == "openvino" and runtime.meta.names == NAMES and runtime.meta.imgsz == IMGSZ
