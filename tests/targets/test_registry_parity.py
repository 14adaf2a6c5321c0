"""Every registered target and model family, at the target's most precise precision (fp32; fp16 for RKNN): the export verifies against the .pt, and the runtime finds the .pt's detections.

Parametrised over ``registered_targets()`` and the YOLO-seg families (YOLO11, YOLOv8, YOLO26),
so a new target or family is covered the day it is registered. A target whose converter or runtime cannot be installed here is skipped with the
export's own message (it names the extra or the venv to make); one that converts but cannot run
here (CoreML off macOS) still has its metadata checked, and one verified by a stand-in (RKNN's
simulator) has its verification checked.
"""

import re

import pytest

from edgeseg.runtimes import load
from edgeseg.runtimes.backends.base import PredictUnavailable
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets import export
from edgeseg.targets.registry import registered_targets

import helpers

IMGSZ = 160
MISSING = re.compile(r"install edgeseg\[|TensorRT is not installed|make rknn-venv")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAMILIES = ["yolo11n-seg.yaml", "yolov8n-seg.yaml", "yolo26n-seg.yaml"]


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda yaml: yaml.split("n-seg")[0])
def checkpoint(request, tmp_path_factory):
    """A calibrated model of each family, as a checkpoint (BatchNorm gain 0.3: stable under every format's arithmetic)."""
    return helpers.export_model(IMGSZ, bn_gain=0.3, yaml=request.param).save(tmp_path_factory.mktemp("parity") / "m.pt")


def test_every_family_is_covered():
    from edgeseg.models.config import family_name, load_model_config

    assert sorted(family_name(load_model_config(yaml)) for yaml in FAMILIES) == ["YOLO11n-seg", "YOLO26n-seg", "YOLOv8n-seg"]


@pytest.mark.parametrize("entry", registered_targets(), ids=lambda entry: entry.name)
def test_most_precise_artifact_finds_what_the_pt_finds(entry, checkpoint, tmp_path):
    precision = entry.precisions[0]
    try:
        artifact = export(checkpoint, entry.name, precision=precision, out=tmp_path / entry.artifact_name("m", precision))
    except EdgesegError as exc:
        if MISSING.search(str(exc)):
            pytest.skip(f"{entry.name}: {exc}")
        raise
    assert artifact.path.name.endswith(entry.suffix) and artifact.meta.precision == precision
    assert artifact.meta.names == load(checkpoint).names and artifact.meta.imgsz == (IMGSZ, IMGSZ)
    if artifact.report.get("skipped"):
        pytest.skip(f"{entry.name}: {artifact.report['skipped']} (metadata checked)")
    assert artifact.report["passed"] and artifact.report["agreement"] >= 0.98
    try:
        runtime = load(artifact.path)
    except PredictUnavailable as exc:
        pytest.skip(f"{entry.name}: verified by {artifact.report['backend']}; {exc}")
    image = helpers.non_square_image()
    helpers.same_objects(next(load(checkpoint).predict(image, imgsz=IMGSZ)), next(runtime.predict(image)))
