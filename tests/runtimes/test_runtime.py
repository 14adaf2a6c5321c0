"""The torch-free runtime: backend registry, .pt/.onnx parity, sources, batching, val and the CLI."""

import dataclasses
import inspect
import json
import logging
import subprocess
import sys
import textwrap
import warnings

import cv2
import numpy as np
import onnx
import pytest
import torch
import yaml
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.data.synth import CLASS_NAMES, synthesize
from edgeseg.runtimes import ModelMeta, Runtime, backends, load
from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.validate import evaluate, split_labels
from edgeseg.runtimes.io.data_config import label_path, load_data_config
from edgeseg.runtimes.meta.model_meta import META_KEY

import helpers

IMGSZ = 160
NC = len(CLASS_NAMES)  # the synthetic dataset's classes, so val runs on it
# (seed, index, width, height) of the synthetic "val" images the tests run on
PARITY_SAMPLE = (2, 0, 240, 150)
FOLDER_SAMPLES = [(3, i, 200 + 20 * i, 130) for i in range(5)]
VIDEO_SAMPLE = (4, 0, 176, 120)
DATASET_SAMPLES = [(0, i, None, None) for i in range(4)]  # synthesize(tmp, 4, 4)'s val split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def calibrated_model() -> "edgeseg.Model":
    """The train-free model (tests/helpers.py) calibrated on every image these tests use."""
    samples = [PARITY_SAMPLE, *FOLDER_SAMPLES, VIDEO_SAMPLE, *DATASET_SAMPLES]
    return helpers.calibrated_model([helpers.sample(*s) for s in samples], IMGSZ)


def export_onnx(model, path, dynamic_batch: bool = False, meta: ModelMeta | None = None):
    """Trace ``model.net`` at IMGSZ to ONNX (static or dynamic batch) and embed ``meta`` when given."""
    torch.onnx.export(
        model.net,
        torch.zeros(1, 3, IMGSZ, IMGSZ),
        str(path),
        opset_version=17,
        input_names=["images"],
        output_names=["preds", "protos"],
        dynamic_axes={"images": {0: "batch"}, "preds": {0: "batch"}, "protos": {0: "batch"}} if dynamic_batch else None,
        dynamo=False,
    )
    if meta is not None:
        proto = onnx.load(str(path))
        proto.metadata_props.add(key=META_KEY, value=meta.to_json())
        onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The same weights as ``m.pt``, ``static.onnx`` (batch 1), ``dynamic.onnx`` and ``plain.onnx`` (no metadata)."""
    root = tmp_path_factory.mktemp("artifacts")
    model = calibrated_model()
    model.save(root / "m.pt")
    meta = ModelMeta(names=dict(model.names), imgsz=(IMGSZ, IMGSZ))
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        export_onnx(model, root / "static.onnx", meta=meta)
        export_onnx(model, root / "dynamic.onnx", dynamic_batch=True, meta=dataclasses.replace(meta, batch=0))
    plain = onnx.load(str(root / "static.onnx"))
    del plain.metadata_props[:]
    onnx.save(plain, str(root / "plain.onnx"))
    return root


@pytest.fixture(scope="module")
def runtimes(artifacts):
    """Runtimes of the four artifacts, by file stem."""
    return {name: load(artifacts / f"{name}.{ext}") for name, ext in [("m", "pt"), ("static", "onnx"), ("dynamic", "onnx"), ("plain", "onnx")]}


@pytest.fixture(scope="module")
def image():
    """A non-square (150, 240, 3) BGR synthetic image."""
    return helpers.sample(*PARITY_SAMPLE)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five readable PNGs of different sizes, plus a corrupt and an empty image file and a stray text file."""
    root = tmp_path_factory.mktemp("images")
    for spec in FOLDER_SAMPLES:
        cv2.imwrite(str(root / f"{spec[1]:02d}.png"), helpers.sample(*spec))
    (root / "bad.jpg").write_bytes(b"not a jpeg at all")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("ignored")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, runtimes):
    """``synthesize(tmp, 4, 4)``'s data YAML, its val labels replaced by the ``.pt`` model's own predictions.

    Untrained weights score 0 mAP on the real labels, which would make comparing metrics vacuous.
    """
    yaml_path = synthesize(tmp_path_factory.mktemp("synth"), 4, 4, progress=False)
    for result in runtimes["m"].predict(yaml_path.parent / "images" / "val"):
        result.save_txt(label_path(result.path))
    return yaml_path


def same_detections(a, b, box_tol: float = 1.0, min_mask_iou: float = 0.98):
    """Assert two Results agree: count, classes, boxes within ``box_tol`` px and mask IoU."""
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=box_tol)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
    inter = (a.masks & b.masks).sum((1, 2))
    union = (a.masks | b.masks).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min(initial=1.0) >= min_mask_iou, iou


# --------------------------------------------------------------------------------------
# Registry and backends
# --------------------------------------------------------------------------------------


def test_registry_picks_backend_by_path(artifacts, runtimes, tmp_path):
    assert all(isinstance(rt, Runtime) for rt in runtimes.values())
    assert runtimes["m"].backend.name == "torch" and runtimes["static"].backend.name == "onnxruntime"
    assert backends.select_backend(artifacts / "m.pt") is not backends.select_backend(artifacts / "static.onnx")
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"\0")
    with pytest.raises(EdgesegError, match=r"model\.bin: unsupported model format.*\.pt.*\.onnx"):
        load(unknown)
    with pytest.raises(EdgesegError, match=r"missing\.onnx: model not found.*\.onnx"):
        load(tmp_path / "missing.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    with pytest.raises(EdgesegError, match="broken.onnx: not a loadable ONNX model"):
        load(tmp_path / "broken.onnx")
    with pytest.raises(EdgesegError, match="unknown device"):
        load(artifacts / "static.onnx", device="tpu")
    with pytest.raises(EdgesegError, match="CUDAExecutionProvider"):
        load(artifacts / "static.onnx", device="0")


class EchoBackend(Backend):
    """A static-batch (3) fake: preds/protos encode each image's mean, to check batch splitting and padding."""

    name = "echo"

    def __init__(self, path, device="cpu"):
        super().__init__(path, ModelMeta(names={0: "thing"}, imgsz=(64, 64), batch=3), device)
        self.calls = []

    def _forward(self, batch):
        assert batch.shape[0] == 3
        self.calls.append(batch.shape[0])
        means = batch.mean((1, 2, 3))
        return np.tile(means[:, None, None], (1, 37, 84)), np.tile(means[:, None, None, None], (1, 32, 16, 16))


def test_one_registration_adds_a_format_and_static_batches_are_padded(monkeypatch, tmp_path):
    monkeypatch.setattr(backends, "_REGISTRY", list(backends._REGISTRY))
    backends.register_backend("echo", backends.suffix_matcher(".echo"), EchoBackend, ".echo (test)")
    (tmp_path / "m.echo").write_text("")
    runtime = load(tmp_path / "m.echo")
    assert isinstance(runtime.backend, EchoBackend) and not runtime.backend.dynamic_batch
    batch = np.random.default_rng(0).random((7, 3, 64, 64), dtype=np.float32)
    preds, protos = runtime.backend.infer(batch)
    assert preds.shape == (7, 37, 84) and protos.shape == (7, 32, 16, 16)
    np.testing.assert_allclose(preds[:, 0, 0], batch.mean((1, 2, 3)), rtol=1e-6)
    assert runtime.backend.calls == [3, 3, 3]
    assert "echo" in repr(runtime) and "batch=3" in repr(runtime)


def test_pt_and_onnx_agree_on_a_non_square_image(runtimes, image):
    pt = next(runtimes["m"].predict(image))
    ox = next(runtimes["static"].predict(image))
    assert pt.orig_shape == ox.orig_shape == (150, 240)
    assert 5 <= len(pt) <= 100
    same_detections(pt, ox)
    assert pt.masks.any(axis=(1, 2)).sum() >= len(pt) // 2  # the masks are not trivially empty
    assert set(ox.speed) == {"preprocess", "inference", "postprocess"} and ox.speed["inference"] > 0


def test_static_artifact_refuses_another_size(runtimes, image):
    with pytest.raises(EdgesegError, match="fixed 160x160 input"):
        runtimes["static"].predict(image, imgsz=320)
    assert runtimes["m"].input_shape(200) == (224, 224)  # dynamic: rounded up to the stride
    runtimes["m"].warmup(192)
    runtimes["static"].warmup()
    assert len(next(runtimes["m"].predict(image, imgsz=192)).boxes.shape) == 2


def test_onnx_without_metadata_uses_the_layout(artifacts, runtimes, image, caplog):
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        plain = load(artifacts / "plain.onnx")
    assert "no 'edgeseg' metadata" in caplog.text and "plain.onnx" in caplog.text
    assert plain.names == {i: str(i) for i in range(NC)} and plain.meta.imgsz == (IMGSZ, IMGSZ)
    same_detections(next(plain.predict(image)), next(runtimes["static"].predict(image)), box_tol=1e-3, min_mask_iou=1.0)


def test_onnx_with_a_wrong_layout_is_refused(tmp_path):
    images = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 64, 64])
    out = onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 3, 64, 64])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["images"], ["out"])], "g", [images], [out])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "identity.onnx"))
    with pytest.raises(EdgesegError, match=r"identity\.onnx: outputs do not have the YOLO-seg layout.*out \[1, 3, 64, 64\]"):
        load(tmp_path / "identity.onnx")


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------


def test_predict_is_a_generator_over_image_path_folder_and_glob(runtimes, folder, caplog):
    rt = runtimes["static"]
    one = rt.predict(folder / "01.png")
    assert inspect.isgenerator(one)
    assert [r.path for r in one] == [str(folder / "01.png")]
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        results = list(rt.predict(folder))
    assert [r.path for r in results] == [str(folder / f"{i:02d}.png") for i in range(5)]
    assert rt.last_skipped == 2
    assert "bad.jpg: skipped" in caplog.text and "empty.png: skipped" in caplog.text and "2 unreadable" in caplog.text
    assert all(r.image is not None and r.image.shape[:2] == r.orig_shape for r in results)
    globbed = rt.predict(str(folder / "0[13].png"), stream=False)
    assert isinstance(globbed, list) and [r.path for r in globbed] == [str(folder / "01.png"), str(folder / "03.png")]
    assert rt.last_skipped == 0


def test_numpy_sources_gray_and_bgra(runtimes, image):
    rt = runtimes["static"]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    results = list(rt.predict([image, gray, gray[..., None], bgra]))
    assert len(results) == 4 and all(r.path is None and r.orig_shape == (150, 240) for r in results)
    same_detections(results[0], results[3], box_tol=1e-4, min_mask_iou=1.0)  # BGRA drops alpha only
    np.testing.assert_array_equal(results[1].image, results[2].image)
    with pytest.raises(EdgesegError, match="uint8"):
        rt.predict(image.astype(np.float32))


def test_video_frames_and_bad_sources(runtimes, folder, tmp_path):
    rt = runtimes["static"]
    video = helpers.write_video(tmp_path / "clip.mp4", VIDEO_SAMPLE, 5)
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    results = list(rt.predict(video))
    assert len(results) == frames == 5
    assert [r.path for r in results] == [f"{video}#{i}" for i in range(5)]
    mixed = list(rt.predict([folder / "00.png", video]))
    assert len(mixed) == 6
    (tmp_path / "broken.mp4").write_bytes(b"\0" * 64)
    with pytest.raises(EdgesegError, match="broken.mp4: cannot open video"):
        rt.predict(tmp_path / "broken.mp4")
    with pytest.raises(EdgesegError, match="nope.png: source not found"):
        rt.predict(tmp_path / "nope.png")
    with pytest.raises(EdgesegError, match="no images or videos match"):
        rt.predict(str(tmp_path / "*.jpeg"))
    with pytest.raises(EdgesegError, match=r"nothing readable.*1 skipped"):
        list(rt.predict(folder / "bad.jpg"))


def test_dynamic_batch_gives_the_same_results(runtimes, folder):
    rt = runtimes["dynamic"]
    assert rt.backend.dynamic_batch and not runtimes["static"].backend.dynamic_batch
    one = list(rt.predict(folder, batch=1))
    four = list(rt.predict(folder, batch=4))
    assert len(one) == len(four) == 5 and sum(map(len, one)) > 0
    for a, b in zip(one, four):
        same_detections(a, b, box_tol=1e-3, min_mask_iou=0.99)


# --------------------------------------------------------------------------------------
# Val
# --------------------------------------------------------------------------------------


def test_val_is_the_same_for_pt_onnx_and_evaluate(artifacts, runtimes, dataset, tmp_path):
    kw = dict(batch=4, max_det=100, progress=False)
    pt = runtimes["m"].val(dataset, **kw)
    ox = runtimes["static"].val(load_data_config(dataset), **kw)
    model = edgeseg.Model(artifacts / "m.pt")

    def infer(batch):
        with torch.no_grad():
            preds, protos = model.net(torch.from_numpy(batch))
        return preds.numpy(), protos.numpy()

    labels = split_labels(load_data_config(dataset), "val")
    direct = evaluate(infer, labels, NC, IMGSZ, batch=4, max_det=100, progress=False)
    for other in (ox, direct):
        for key, value in pt.results_dict.items():
            assert other.results_dict[key] == pytest.approx(value, abs=0.002), key
    assert pt.box.seen == 4 and pt.box.map50 > 0.4 and pt.seg.map50 > 0.2  # the pseudo-labels make it non-trivial
    in_memory = model.val(dataset, **kw)
    assert in_memory.results_dict == pytest.approx(direct.results_dict, abs=1e-6)
    wrong = tmp_path / "three.yaml"
    wrong.write_text(yaml.safe_dump({**yaml.safe_load(dataset.read_text()), "names": ["a", "b", "c"]}))
    with pytest.raises(EdgesegError, match="the dataset has 3 classes.*has 5"):
        runtimes["static"].val(wrong)


def test_model_predict_uses_the_runtime(artifacts, runtimes, image):
    model = edgeseg.Model(artifacts / "m.pt")
    same_detections(next(model.predict(image)), next(runtimes["m"].predict(image)), box_tol=1e-2, min_mask_iou=0.98)


def test_runtime_never_imports_torch(artifacts, dataset, image, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), image)
    script = textwrap.dedent(
        f"""
        import sys
        import edgeseg.runtimes
        rt = edgeseg.runtimes.load({str(artifacts / "static.onnx")!r})
        assert len(list(rt.predict({str(tmp_path / "a.png")!r}))) == 1
        rt.val({str(dataset)!r}, max_det=30, progress=False)
        print(repr(rt))
        assert "torch" not in sys.modules, "torch was imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Runtime(onnxruntime" in proc.stdout


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def test_cli_predict_writes_images_labels_json_and_video(artifacts, folder, tmp_path):
    runner = CliRunner()
    args = ["predict", str(artifacts / "static.onnx"), str(folder), "--project", str(tmp_path), "--save-txt", "--save-json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "predict"
    assert sorted(p.name for p in run.glob("*.png")) == [f"{i:02d}.png" for i in range(5)]
    assert cv2.imread(str(run / "03.png")).shape == (130, 260, 3)
    assert sorted(p.name for p in (run / "labels").iterdir()) == [f"{i:02d}.txt" for i in range(5)]
    coco = json.loads((run / "predictions.json").read_text())
    assert coco and {e["image_id"] for e in coco} <= set(range(5)) and "counts" in coco[0]["segmentation"]
    assert "5 images" in result.output and "2 skipped" in result.output and "ms/img" in result.output
    assert f"{folder / '00.png'}: 130x200" in result.output

    video = helpers.write_video(tmp_path / "clip.mp4", VIDEO_SAMPLE, 3)
    again = runner.invoke(main, ["predict", str(artifacts / "static.onnx"), str(video), "--project", str(tmp_path), "--hide-conf"])
    assert again.exit_code == 0, again.output
    capture = cv2.VideoCapture(str(tmp_path / "predict2" / "clip.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_cli_predict_missing_source_is_one_line(artifacts, tmp_path):
    result = CliRunner().invoke(main, ["predict", str(artifacts / "static.onnx"), str(tmp_path / "nope.jpg"), "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {tmp_path / 'nope.jpg'}: source not found"]
    assert not (tmp_path / "predict").exists()


def test_cli_val_prints_the_table(artifacts, dataset):
    result = CliRunner().invoke(main, ["val", str(artifacts / "dynamic.onnx"), "--data", str(dataset), "--batch", "4"])
    assert result.exit_code == 0, result.output
    assert "mAP50-95)" in result.output and "all" in result.output


def test_onnx_sessions_one_image_spins_while_it_runs_a_stream_sleeps():
    from edgeseg.runtimes.backends.onnx import session_options

    one, stream = session_options(stream=False), session_options(stream=True)
    assert one.get_session_config_entry("session.force_spinning_stop") == "1"
    assert one.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert stream.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert stream.get_session_config_entry("session.dynamic_block_base") == "4"


def test_one_image_runs_on_the_latency_session_and_several_on_the_stream_one_with_the_same_results(artifacts, image, folder):
    runtime = load(artifacts / "static.onnx")
    backend = runtime.backend
    calls = []
    original = backend.stream_infer
    backend.stream_infer = lambda: calls.append("stream") or original()
    one = next(runtime.predict(image))  # pipeline=True by default: one frame has nothing to overlap
    assert calls == []
    streamed = list(runtime.predict([image, image]))
    assert calls == ["stream"]
    twin = backend._stream_backend
    assert twin is not backend and twin.session is not backend.session
    assert original() == twin.infer and backend._stream_backend is twin  # opened once
    for result in streamed:
        same_detections(one, result, box_tol=0.0, min_mask_iou=1.0)
    batch = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    for a, b in zip(backend.infer(batch), twin.infer(batch)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)  # the same graph and kernels; only the thread settings differ
    assert len(list(runtime.predict(folder, pipeline=False))) == 5 and calls == ["stream"]  # pipeline=False: the latency session
    backend.device = "cuda:0"  # on a GPU no second session: the model would sit twice in its memory
    assert original() == backend.infer
