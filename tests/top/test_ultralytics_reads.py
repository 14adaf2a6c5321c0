"""``benchmarks/ultralytics_reads.py``: its pairing of detections (here), and the whole run with Ultralytics (where its venv is)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "ultralytics_reads.py"
VENV = ROOT / ".venv-ultralytics"


@pytest.fixture(scope="module")
def reads():
    """The script as a module (``benchmarks/`` on the path, as when it runs)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("ultralytics_reads", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def detections(boxes, classes, scores):
    return {"boxes": boxes, "classes": classes, "scores": scores}


def test_pairs_by_class_and_iou_and_flags_one_sided_detections(reads):
    ours = detections([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [0, 1, 2], [0.9, 0.8, 0.255])
    theirs = detections([[20.5, 20, 40, 40.9], [0.2, 0, 10, 10], [70, 70, 80, 80]], [1, 0, 2], [0.8, 0.9, 0.6])
    result = reads.match(ours, theirs, margin=0.01)
    # two pairs (found across orders), 0.9 px apart at most; the 0.255 one is borderline, the 0.6 one is not
    assert result == {"pairs": 2, "max_px": pytest.approx(0.9, abs=1e-6), "borderline": 1, "unmatched": 1}
    other_class = detections([[0, 0, 10, 10]], [3], [0.9])
    assert reads.match(detections([[0, 0, 10, 10]], [0], [0.9]), other_class, 0.01)["pairs"] == 0


def test_an_artifact_passes_only_when_ultralytics_read_it_all(reads):
    ours = {"names": {0: "a", 1: "b"}, "imgsz": [320, 320], "images": [detections([[0, 0, 10, 10]], [0], [0.9])]}
    theirs = {"task": "segment", "names": {"0": "a", "1": "b"}, "imgsz": [320, 320], "images": [{**detections([[0, 0, 10.5, 10]], [0], [0.9]), "masks": 1}]}
    assert reads.compare(ours, theirs, px=1.0, margin=0.01)["passed"]
    for change in ({"task": "detect"}, {"names": {"0": "class0", "1": "class1"}}, {"imgsz": [640, 640]}):
        assert not reads.compare(ours, {**theirs, **change}, px=1.0, margin=0.01)["passed"]
    assert not reads.compare(ours, theirs, px=0.4, margin=0.01)["passed"]


@pytest.mark.skipif(
    not (VENV / "bin" / "python").exists(),
    reason="needs .venv-ultralytics (Ultralytics 8.4 and its own torch, ~5.5 GB; benchmarks/ultralytics_reads.py builds it)",
)
@pytest.mark.slow
def test_ultralytics_reads_edgeseg_onnx(tmp_path):
    out = tmp_path / "reads.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--targets", "onnx", "--images", "2", "--out", str(out)],
        cwd=SCRIPT.parent, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "onnx" in done.stdout and out.is_file()
