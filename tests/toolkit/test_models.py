"""YOLO11-seg architecture: Ultralytics-exact sizes, output contract, fusion, naming."""

import pytest
import torch

from edgeseg.models.config import load_model_config
from edgeseg.nn.net import SegmentationNet
from edgeseg.nn.summary import count_parameters, gflops

# Ultralytics' published numbers for the yolo11{scale}-seg models with nc=80.
PARAMS = {"n": 2_876_848, "s": 10_113_248, "m": 22_420_896, "l": 27_678_368, "x": 62_142_656}
GFLOPS_640 = {"n": 9.96, "s": 33.36, "m": 113.97, "l": 133.18, "x": 297.89}


def build(scale: str, nc: int | None = None) -> SegmentationNet:
    return SegmentationNet(load_model_config(f"yolo11{scale}-seg.yaml", nc=nc))


@pytest.mark.parametrize("scale", list(PARAMS))
def test_parameter_count_and_gflops_match_ultralytics(scale):
    model = build(scale)
    assert count_parameters(model) == PARAMS[scale]
    assert gflops(model, 640) == pytest.approx(GFLOPS_640[scale], rel=0.02)


def test_scale_comes_from_the_file_name():
    assert load_model_config("yolo11n-seg.yaml")["scale"] == "n"
    assert load_model_config("yolo11x-seg.yaml")["scale"] == "x"
    assert load_model_config("yolo11-seg.yaml")["scale"] == "n"


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    model = build("n").eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


def test_eval_outputs_follow_the_contract(nano):
    with torch.no_grad():
        preds, protos = nano(torch.rand(1, 3, 640, 640))
    assert preds.shape == (1, 116, 8400)
    assert protos.shape == (1, 32, 160, 160)
    scores = preds[:, 4:84]
    assert scores.min() >= 0 and scores.max() <= 1
    boxes = preds[:, :4]
    assert (boxes[:, 2:] > 0).all()
    assert nano.stride.tolist() == [8.0, 16.0, 32.0]


def test_non_square_input_and_train_mode_outputs(nano):
    nano.train()
    try:
        levels, coeffs, protos = nano(torch.rand(2, 3, 256, 320))
    finally:
        nano.eval()
    assert [tuple(x.shape) for x in levels] == [(2, 144, 32, 40), (2, 144, 16, 20), (2, 144, 8, 10)]
    assert coeffs.shape == (2, 32, 32 * 40 + 16 * 20 + 8 * 10)
    assert protos.shape == (2, 32, 64, 80)


def test_decoded_boxes_are_input_pixels(nano):
    with torch.no_grad():
        preds, _ = nano(torch.rand(1, 3, 320, 320))
    cx, cy = preds[0, 0], preds[0, 1]
    # Every anchor's box centre stays within a few strides of the image.
    assert cx.min() > -64 and cx.max() < 384 and cy.min() > -64 and cy.max() < 384
    # The first anchor's centre is at (4, 4) px; its decoded box centre stays within one cell of it.
    assert abs(float(cx[0]) - 4) < 8 and abs(float(cy[0]) - 4) < 8


def test_fused_model_gives_the_same_outputs(nano):
    import copy

    x = torch.rand(1, 3, 640, 640)
    with torch.no_grad():
        preds, protos = nano(x)
        fused = copy.deepcopy(nano).fuse()
        fused_preds, fused_protos = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(preds, fused_preds, atol=1e-4)
    assert torch.allclose(protos, fused_protos, atol=1e-4)


def test_state_dict_uses_ultralytics_names(nano):
    keys = list(nano.state_dict())
    assert keys[0] == "model.0.conv.weight"
    assert keys[-1] == "model.23.cv4.2.2.bias"
    for key in (
        "model.2.m.0.cv1.conv.weight",
        "model.10.m.0.attn.qkv.conv.weight",
        "model.10.m.0.attn.pe.bn.running_var",
        "model.10.m.0.ffn.1.conv.weight",
        "model.23.cv3.0.0.0.conv.weight",
        "model.23.dfl.conv.weight",
        "model.23.proto.upsample.weight",
        "model.23.proto.cv3.conv.weight",
    ):
        assert key in keys
    assert tuple(nano.state_dict()["model.23.cv3.0.2.weight"].shape) == (80, 80, 1, 1)
    assert tuple(nano.state_dict()["model.23.cv4.0.2.weight"].shape) == (32, 32, 1, 1)


def test_custom_class_count():
    model = build("n", nc=5).eval()
    with torch.no_grad():
        preds, _ = model(torch.rand(1, 3, 128, 128))
    assert preds.shape == (1, 4 + 5 + 32, 16 * 16 + 8 * 8 + 4 * 4)
