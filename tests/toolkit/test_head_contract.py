"""The head's contract: torch and numpy decodes agree, the split mode gives the int8 outputs, and the float-kept names are the head's."""

import copy
import dataclasses
import io
import re
import warnings

import numpy as np
import onnx
import pytest
import torch

import edgeseg
from edgeseg.nn.head import Segment, float_kept_modules, head_module_name, prediction_layer_modules
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.head_decode import OUTPUTS, SPLIT_OUTPUTS, join_split_head
from edgeseg.targets import onnx as onnx_target
from edgeseg.targets.common import ExportJob

IMGSZ = (64, 96)  # non-square, so that a swapped anchor grid shows
CONFIGS = [("n", 3), ("s", 7)]
OLD_SPLIT_OUTPUTS = ["box_logits", "scores", "coefficients", "protos"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_net(scale: str, nc: int) -> torch.nn.Module:
    """A random yolo11{scale}-seg with ``nc`` classes in eval mode whose outputs vary over the anchors.

    Fresh BatchNorm statistics make activations vanish through the untrained net; one train-mode
    pass over random images with cumulative statistics gives every layer real spread.
    """
    torch.manual_seed(0)
    net = edgeseg.Model(f"yolo11{scale}-seg.yaml", nc=nc).net
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, *IMGSZ))
    return net.eval()


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"{s}-nc{nc}" for s, nc in CONFIGS])
def net(request):
    """A random network of each config in ``CONFIGS``."""
    return random_net(*request.param)


@pytest.fixture(scope="module")
def fused(net):
    """A fused copy of ``net``, as export jobs get it."""
    return copy.deepcopy(net).fuse()


@pytest.fixture(scope="module")
def images():
    """(2, 3, 64, 96) float32 random images in [0, 1]."""
    return torch.rand(2, 3, *IMGSZ, generator=torch.Generator().manual_seed(1))


def split_forward(net, images):
    """``net``'s eval outputs with its head in split mode (the mode is reset afterwards)."""
    net.head.split = True
    try:
        with torch.no_grad():
            return net(images)
    finally:
        net.head.split = False


def test_numpy_decode_equals_the_torch_decode(net, images):
    with torch.no_grad():
        preds, protos = net(images)
    box_logits, scores, coefficients, split_protos = split_forward(net, images)
    strides = [int(s) for s in net.head.stride]
    joined = join_split_head(box_logits.numpy(), scores.numpy(), coefficients.numpy(), IMGSZ, strides)
    assert joined.dtype == np.float32 and joined.shape == tuple(preds.shape)
    assert preds[:, :4].std() > 1 and preds[:, 4 : 4 + net.nc].std() > 1e-3  # boxes and scores vary over the anchors
    np.testing.assert_allclose(joined[:, :4], preds[:, :4].numpy(), rtol=1e-5, atol=1e-4)  # pixels
    np.testing.assert_allclose(joined[:, 4:], preds[:, 4:].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(split_protos.numpy(), protos.numpy())


def test_split_mode_gives_the_int8_outputs(net, images):
    head = net.head
    assert head.output_names == OUTPUTS == ["preds", "protos"]
    head.split = True
    try:
        assert head.output_names == SPLIT_OUTPUTS == OLD_SPLIT_OUTPUTS
    finally:
        head.split = False
    keys = list(net.state_dict())
    box_logits, scores, coefficients, protos = split_forward(net, images)
    assert list(net.state_dict()) == keys and not head.split

    b, anchors = len(images), sum((IMGSZ[0] // int(s)) * (IMGSZ[1] // int(s)) for s in head.stride)
    assert tuple(box_logits.shape) == (b, 4 * head.reg_max, anchors)
    assert tuple(scores.shape) == (b, head.nc, anchors)
    assert tuple(coefficients.shape) == (b, head.nm, anchors)
    assert tuple(protos.shape) == (b, head.nm, IMGSZ[0] // 4, IMGSZ[1] // 4)

    head.training = True  # the head alone: raw levels, BatchNorm of the whole net still in eval
    try:
        with torch.no_grad():
            levels, coeffs, train_protos = net(images)
    finally:
        head.training = False
    flat = torch.cat([level.flatten(2) for level in levels], 2)
    tight = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(box_logits.numpy(), flat[:, : 4 * head.reg_max].numpy(), **tight)
    np.testing.assert_allclose(scores.numpy(), flat[:, 4 * head.reg_max :].sigmoid().numpy(), **tight)
    np.testing.assert_allclose(coefficients.numpy(), coeffs.numpy(), **tight)
    np.testing.assert_allclose(protos.numpy(), train_protos.numpy(), **tight)


def test_tflite_int8_graph_is_the_split_mode(fused, images, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    meta = ModelMeta(names=fused.names, imgsz=IMGSZ)
    job = ExportJob(fused, meta, tmp_path / "m.tflite", "int8", IMGSZ, 2, False, False, None, 1, "cpu", True, 17)
    names = onnx_target.converter_graph(job, tmp_path / "m.onnx")
    assert names == OLD_SPLIT_OUTPUTS and not fused.head.split
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [o.name for o in graph.output] == OLD_SPLIT_OUTPUTS
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(names, {"images": images.numpy()})
    for got, expected in zip(outputs, split_forward(fused, images)):
        expected = expected.numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())  # onnxruntime's float32 kernels
    assert onnx_target.converter_graph(dataclasses.replace(job, precision="fp32"), tmp_path / "f.onnx") == OUTPUTS


def test_float_kept_names_resolve_to_the_head(net):
    modules = dict(net.named_modules())
    head = head_module_name(net)
    assert modules[head] is net.head and isinstance(modules[head], Segment)
    kept = float_kept_modules(net)
    assert len(kept) == len(set(kept)) == 1 + 3 * net.head.nl
    assert kept[0] == f"{head}.dfl" and modules[kept[0]] is net.head.dfl
    for name in kept[1:]:
        assert name.startswith(f"{head}.cv") and isinstance(modules[name], torch.nn.Conv2d)
    last_convs = {id(branch[i][-1]) for branch in (net.head.cv2, net.head.cv3, net.head.cv4) for i in range(net.head.nl)}
    assert {id(modules[name]) for name in kept[1:]} == last_convs

    wrapper = torch.nn.Module()
    wrapper.body = net
    assert head_module_name(wrapper) == f"body.{head}"
    assert float_kept_modules(wrapper) == [f"body.{name}" for name in kept]
    with pytest.raises(ValueError, match="no Detect/Segment head"):
        head_module_name(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))


def test_openvino_ignored_patterns_keep_the_same_nodes_in_float(fused):
    pytest.importorskip("nncf")
    from edgeseg.targets.openvino import ignored_patterns

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fused, (torch.zeros(1, 3, *IMGSZ),), buffer, opset_version=17, input_names=["images"], output_names=OUTPUTS, dynamo=False)
    nodes = [node.name for node in onnx.load_from_string(buffer.getvalue()).graph.node]

    def matched(patterns: list[str]) -> set[str]:
        return {n for n in nodes if any(re.fullmatch(p, n) for p in patterns)}

    # the patterns the OpenVINO target had for yolo11-seg.yaml, whose head is layer 23
    assert head_module_name(fused) == "model.23"
    before = [
        r".*/model.23/dfl/.*",
        r".*/model.23/Add.*",
        r".*/model.23/Sub.*",
        r".*/model.23/Mul.*",
        r".*/model.23/Div.*",
        r".*/model.23/cv[234]\.\d/cv[234]\.\d\.2/.*",
    ]
    kept = matched(ignored_patterns(fused))
    assert kept == matched(before)
    assert "/model.23/dfl/conv/Conv" in kept and "/model.23/cv4.2/cv4.2.2/Conv" in kept and "/model.23/Add" in kept
    assert all(n.startswith("/model.23/") for n in kept)


@pytest.mark.parametrize("yaml, semantic", [("yolo11n-seg.yaml", False), ("yolo26n-seg.yaml", True)])
def test_prediction_layers_are_the_head_outputs_and_the_prototype_and_semantic_output_layers(yaml, semantic):
    net = edgeseg.Model(yaml, nc=3).net
    modules = dict(net.named_modules())
    head = head_module_name(net)
    names = prediction_layer_modules(net)
    branches = ["cv2", "cv3", "cv4"] + (["one2one_cv2", "one2one_cv3", "one2one_cv4"] if net.head.has_one2one else [])
    expected = {id(getattr(net.head, b)[i][-1]) for b in branches for i in range(net.head.nl)} | {id(net.head.proto.cv3)}
    if semantic:
        expected.add(id(net.head.proto.semseg[-1]))
    assert len(names) == len(set(names)) == len(expected)
    assert {id(modules[name]) for name in names} == expected
    assert all(name.startswith(f"{head}.") for name in names) and f"{head}.dfl" not in names  # the DFL is eval-only
