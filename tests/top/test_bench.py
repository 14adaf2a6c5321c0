"""``edgeseg bench`` and device presets: rows match ``Runtime.val`` and ``verify``, outputs parse, skips, presets."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
from click.testing import CliRunner

import edgeseg
import edgeseg.benchmark
import edgeseg.targets
from edgeseg.benchmark import COLUMNS, _candidates, _target_of
from edgeseg.cli import main
from edgeseg.runtimes import load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.sources import split_images
from edgeseg.targets.presets import preset, preset_names, presets
from edgeseg.targets.registry import TargetEntry, target_names
from edgeseg.targets.verify import MAX_IMAGES, verify

import helpers

IMGSZ = 160


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A calibrated (train-free, real detections) yolo11n-seg checkpoint at 160."""
    return helpers.export_model(IMGSZ).save(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """A 4 + 8 image synthetic set whose val labels are the ``.pt`` model's predictions (non-trivial mAP)."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 4, 8)


def _missing_sdk(job):
    """A target build whose third-party package is not installed."""
    raise ModuleNotFoundError("No module named 'fakert_sdk'", name="fakert_sdk")


@pytest.fixture(scope="module")
def benched(checkpoint, dataset, tmp_path_factory):
    """``edgeseg.bench`` of onnx fp32, onnx fp16 and a target whose extra is missing: (rows, run folder)."""
    project = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(edgeseg.targets.registry._REGISTRY, "fakert", TargetEntry("fakert", _missing_sdk, ("fp32",), "fakert", ".onnx"))
        rows = edgeseg.bench(checkpoint, str(dataset), targets=["onnx", "onnx:fp16", "fakert"], runs=3, project=project, name="b")
    return rows, project / "b"


def test_rows_match_val_and_verify_against_the_pytorch_row(benched, checkpoint, dataset):
    rows, _ = benched
    assert [(r["format"], r["precision"]) for r in rows] == [("pytorch", "fp32"), ("onnx", "fp32"), ("onnx", "fp16"), ("fakert", "fp32")]
    reference = load(checkpoint)
    images = split_images(dataset, "val", MAX_IMAGES).images
    for row in rows[:3]:
        assert row["status"] == "ok"
        runtime = load(row["path"])
        metrics = runtime.val(str(dataset), imgsz=IMGSZ if row["format"] == "pytorch" else None, progress=False)
        assert (row["box_map"], row["box_map50"], row["mask_map"], row["mask_map50"]) == (
            metrics.box.map, metrics.box.map50, metrics.seg.map, metrics.seg.map50,
        )  # fmt: skip
        assert row["d_mask_map"] == row["mask_map"] - rows[0]["mask_map"]
        assert row["d_box_map"] == row["box_map"] - rows[0]["box_map"]
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["throughput"] > 0 and row["peak_rss_mb"] > 0
        if row["format"] == "pytorch":
            assert row["max_abs_diff"] is None and row["best_batch"] in (1, 2, 4, 8)
            continue
        report = verify(reference, runtime, images, row["precision"])
        assert row["max_abs_diff"] == max(report["max_abs_diff"]["preds"], report["max_abs_diff"]["protos"])
        assert (row["agreement"], row["mask_iou"]) == (report["agreement"], report["mask_iou"]["mean"])
        assert row["best_batch"] == 1 and row["export_s"] > 0 and row["size_mb"] > 0
    assert rows[0]["mask_map"] > 0.1  # the labels are the model's own predictions
    assert rows[2]["size_mb"] < 0.6 * rows[1]["size_mb"]  # fp16 halves the weights


def test_missing_extra_is_a_skipped_row(benched):
    skipped = benched[0][3]
    assert skipped["status"].startswith("skipped:") and "install edgeseg[fakert]" in skipped["status"]
    assert skipped["mask_map"] is None and set(skipped) == set(COLUMNS)


def test_csv_json_and_chart_are_written(benched):
    rows, folder = benched
    with open(folder / "bench.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == COLUMNS and len(table) == len(rows)
    assert float(table[1]["mask_map"]) == pytest.approx(rows[1]["mask_map"])
    saved = json.loads((folder / "bench.json").read_text())
    assert saved["rows"][2]["format"] == "onnx" and saved["imgsz"] == IMGSZ
    chart = cv2.imread(str(folder / "bench.png"))
    assert chart is not None and chart.shape[0] > 100


def test_cli_bench_passes_its_options_and_prints_the_table(benched, monkeypatch):
    calls = []

    def fake_bench(model, data, **options):
        calls.append((model, data, options))
        return benched[0]

    monkeypatch.setattr(edgeseg.benchmark, "bench", fake_bench)
    args = ["bench", "m.pt", "--data", "d.yaml", "--targets", "onnx,tflite:int8,x.onnx", "--target", "pi", "--runs", "2", "--calib", "16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model, data, options = calls[0]
    assert (model, data, options["targets"], options["preset"], options["runs"]) == ("m.pt", "d.yaml", ["onnx", "tflite:int8", "x.onnx"], "pi", 2)
    assert options["calib"] == 16 and options["device"] is None
    lines = result.output.splitlines()
    assert lines[0].startswith("format") and lines[2].startswith("pytorch fp32") and lines[4].startswith("onnx fp16")
    assert lines[5].startswith("fakert fp32") and "install edgeseg[fakert]" in lines[5]


def test_bad_target_specs_fail_fast():
    with pytest.raises(EdgesegError, match="unknown export target 'onxx'"):
        _candidates(["onxx"], None)
    with pytest.raises(EdgesegError, match="onnx exports fp32, fp16, not 'int8'"):
        _candidates(["onnx:int8"], None)
    with pytest.raises(EdgesegError, match="expected target"):
        _candidates(["onnx:fp8"], None)
    assert _candidates(None, preset("pi")) == list(preset("pi").candidates)
    assert ("onnx", "fp16") in _candidates(["all"], None)


def test_existing_artifacts_are_taken_as_they_are(benched):
    onnx_path = benched[0][2]["path"]
    assert _candidates([onnx_path, "onnx"], None) == [Path(onnx_path), ("onnx", "fp32")]
    assert _target_of(Path(onnx_path), "onnxruntime") == "onnx"
    assert _target_of(Path("m.unknown"), "somebackend") == "somebackend"


@pytest.mark.parametrize(
    "name,target,precision",
    [(p.name, t, q) for p in presets().values() for t, q in ((p.target, p.precision), *p.candidates)],
)
def test_presets_resolve_to_registered_targets(name, target, precision):
    if target not in target_names():
        pytest.skip(f"preset {name}: target {target} is not registered in this checkout")
    assert precision in edgeseg.targets.registry._REGISTRY[target].precisions


def test_preset_table_names_the_devices():
    assert preset_names() == ["jetson", "pi", "mac", "intel", "rockchip", "cpu"]
    chosen = {p.name: (p.target, p.precision, p.imgsz) for p in presets().values()}
    assert chosen["pi"] == ("tflite", "int8", 320) and chosen["cpu"] == ("onnx", "fp32", 640)
    assert chosen["rockchip"] == ("rknn", "int8", 640) and ("ncnn", "fp16") in preset("pi").candidates
    with pytest.raises(EdgesegError, match="unknown device preset 'tv'"):
        preset("tv")


@pytest.mark.parametrize(
    "extra,expected",
    [([], ("tflite", "int8", 320)), (["--precision", "fp16", "--imgsz", "256"], ("tflite", "fp16", 256))],
)
def test_export_preset_prints_its_choice(monkeypatch, tmp_path, extra, expected):
    calls = []

    def fake_export(model, **options):
        calls.append(options)
        return SimpleNamespace(path=tmp_path / "m-int8.tflite", size_mb=1.0, report={}, seconds=0.1)

    monkeypatch.setattr(edgeseg.targets, "export", fake_export)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.pt"), "--target", "pi", *extra])
    assert result.exit_code == 0, result.output
    target, precision, imgsz = expected
    assert "preset pi (Raspberry Pi" in result.output and f"{target} {precision} at imgsz {imgsz}" in result.output
    assert (calls[0]["target"], calls[0]["precision"], calls[0]["imgsz"]) == expected


def test_summary_names_the_reference_map_the_largest_drop_and_why_rows_were_skipped():
    from edgeseg.benchmark import _empty_row, summary_lines

    def measured(fmt, precision, mask_map, p50):
        row = _empty_row(fmt, precision, "ok")
        row.update(box_map50=0.7, mask_map50=0.6, mask_map=mask_map, d_mask_map=mask_map - 0.40, p50_ms=p50)
        return row

    rows = [
        measured("pytorch", "", 0.40, 30.0),
        measured("onnx", "fp32", 0.40, 9.0),
        measured("openvino", "int8", 0.35, 4.0),
        _empty_row("tflite", "fp32", "skipped: TFLite export needs the onnx2tf converter"),
        _empty_row("tflite", "int8", "skipped: TFLite export needs the onnx2tf converter"),
    ]
    assert summary_lines(rows) == [
        "pytorch: mask mAP50 0.600, box mAP50 0.700 (mask mAP50-95 0.400); 2 of 4 artifacts measured",
        "largest mask mAP50-95 change: openvino int8 -0.050; fastest: openvino int8 4.0 ms per image (p50)",
        "not measured (tflite fp32, tflite int8): skipped: TFLite export needs the onnx2tf converter",
    ]


def test_calib_reaches_the_int8_exports(checkpoint, dataset, tmp_path, monkeypatch):
    """``calib`` is handed to every export (what an int8 row calibrates on); a refused export is a skipped row."""
    seen = []

    def refuse(model, **options):
        seen.append(options["calib"])
        raise EdgesegError("stand-in export")

    monkeypatch.setattr(edgeseg.targets, "export", refuse)
    rows = edgeseg.bench(checkpoint, str(dataset), targets=["openvino:int8", "onnx"], runs=1, calib=7, project=tmp_path, name="b")
    assert seen == [7, 7] and [r["status"] for r in rows[1:]] == ["skipped: stand-in export"] * 2
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["calib"] == 7
