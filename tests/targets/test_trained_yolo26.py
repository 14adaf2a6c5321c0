"""A YOLO26-seg trained by edgeseg from its YAML: both branches learn, and its best.pt exported end to end vals as the .pt does."""

import pytest
import torch

import edgeseg
from edgeseg.runtimes import load

import helpers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data YAML, best.pt) of yolo26n-seg trained by heart on ``helpers.memorise_set`` (1 thread; no val: best = lowest loss).

    fp32 (``amp=False``) on every CPU: with bf16 where the CPU has it, the ~19 optimizer steps of
    this run would take another path on machines with and without it.
    """
    folder = tmp_path_factory.mktemp("memorise26")
    data = helpers.memorise_set(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        edgeseg.Model("yolo26n-seg.yaml").train(
            str(data), epochs=150, imgsz=128, batch=8, workers=0, plots=False, val=False, warmup_epochs=0, mosaic=0.0,
            scale=0.2, close_mosaic=0, optimizer="AdamW", lr0=0.002, amp=False, project=str(folder), name="learn",
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return data, folder / "learn" / "weights" / "best.pt"


@pytest.mark.usefixtures("one_torch_thread")
def test_both_branches_learn(trained):
    data, best = trained
    for end2end in (False, True):
        metrics = edgeseg.Model(best).val(str(data), imgsz=128, end2end=end2end, progress=False)
        assert metrics.seg.map50 > 0.5 and metrics.box.map50 > 0.5, f"end2end={end2end}"


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_end2end_export_of_best_vals_as_the_pt(trained, target, tmp_path):
    """The one-to-one branch with top-k in the graph: mAP within the fp32 verification limit (0.005) of the .pt's one-to-one val."""
    data, best = trained
    pt = edgeseg.Model(best).val(str(data), imgsz=128, end2end=True, progress=False)
    artifact = edgeseg.Model(best).export(target, end2end=True, imgsz=128, out=tmp_path)
    assert (artifact.meta.selection, artifact.report["passed"]) == ("topk", True)
    exported = load(artifact.path).val(str(data), progress=False)
    assert abs(exported.seg.map - pt.seg.map) <= 0.005 and abs(exported.box.map - pt.box.map) <= 0.005
    assert pt.seg.map > 0.25
