"""The three YOLO-seg families from edgeseg's own YAMLs: the architectures Ultralytics builds, their heads, ``edgeseg info``.

``tests/fixtures/ultralytics/architectures-u8.4.190.json.gz`` holds what Ultralytics 8.4.190
builds from its own ``yolov8``/``yolo11``/``yolo26`` ``-seg`` YAMLs at scales n..x (``nc=80``):
every ``state_dict`` entry (name and shape, in order) and the parameter count
(``make_architectures.py`` beside it). Ultralytics is not installed here.
"""

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.models.config import family_name, load_model_config
from edgeseg.nn.net import SegmentationNet, check_architecture
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.pipeline.head_decode import join_split_head

ARCHITECTURES = Path(__file__).parents[1] / "fixtures" / "ultralytics" / "architectures-u8.4.190.json.gz"
with gzip.open(ARCHITECTURES, "rt", encoding="utf-8") as _f:
    ULTRALYTICS = json.load(_f)["models"]


def test_the_facts_cover_three_families_at_five_scales():
    assert sorted(ULTRALYTICS) == sorted(f"{f}{s}-seg.yaml" for f in ("yolov8", "yolo11", "yolo26") for s in "nslmx")


@pytest.mark.parametrize("name", sorted(ULTRALYTICS))
def test_architecture_is_the_one_ultralytics_builds(name):
    """Every state_dict entry, in Ultralytics' order and shape, and the parameter count: a genuine checkpoint's weights load key for key."""
    cfg = load_model_config(name)
    shapes = check_architecture(cfg, name)  # built on the meta device: no memory
    expected = ULTRALYTICS[name]
    assert list(shapes.items()) == [(key, tuple(shape)) for key, shape in expected["state_dict"]]
    with torch.device("meta"):
        parameters = sum(p.numel() for p in SegmentationNet(cfg).parameters())
    assert parameters == expected["parameters"]


@pytest.mark.parametrize(
    "name, family, parameters, head",
    [
        ("yolov8n-seg.yaml", "YOLOv8n-seg", 3_409_968, "Segment "),
        ("yolo11s-seg.yaml", "YOLO11s-seg", 10_113_248, "Segment "),
        ("yolo26n-seg.yaml", "YOLO26n-seg", 3_126_280, "Segment26"),
    ],
)
def test_info_shows_each_family(name, family, parameters, head):
    result = CliRunner().invoke(main, ["info", name, "--imgsz", "64"])
    assert result.exit_code == 0, result.output
    assert f"{name.removesuffix('.yaml')} summary: " in result.output and f"{parameters:,} parameters" in result.output
    assert head in result.output.splitlines()[-3]  # the head's row, above the summary and the classes
    assert family_name(load_model_config(name)) == family


def test_yolov8_and_yolo26_blocks_as_ultralytics_builds_them():
    """v8: the class branch of two 3x3 Convs, DFL; 26: no DFL, one-to-one copies, SPPF with shortcut and an unactivated cv1."""
    v8 = edgeseg.Model("yolov8n-seg.yaml").net
    y26 = edgeseg.Model("yolo26n-seg.yaml").net
    assert v8.head.cv3[0][0].conv.kernel_size == (3, 3) and v8.head.reg_max == 16 and v8.head.branches == ["one2many"]
    assert y26.head.reg_max == 1 and isinstance(y26.head.dfl, torch.nn.Identity)
    assert y26.head.branches == ["one2many", "one2one"] and type(y26.head.proto).__name__ == "Proto26"
    sppf = y26.model[9]
    assert sppf.add and isinstance(sppf.cv1.act, torch.nn.Identity) and isinstance(v8.model[9].cv1.act, torch.nn.SiLU)
    assert not v8.model[9].add
    with pytest.raises(ValueError, match="no 'one2one' branch"):
        v8.head.select_branch("one2one")


@pytest.fixture(scope="module")
def yolo26():
    """A yolo26n-seg with 3 classes whose BatchNorm statistics come from random images, so outputs vary over the anchors."""
    torch.manual_seed(0)
    net = edgeseg.Model("yolo26n-seg.yaml", nc=3).net
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 64, 96))
    return net.eval()


@pytest.mark.parametrize("branch", ["one2many", "one2one"])
def test_numpy_decode_of_a_head_without_dfl(yolo26, branch, one_torch_thread):
    """``join_split_head`` with reg_max 1: the split outputs' box rows are the distances themselves."""
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    head = yolo26.head
    head.select_branch(branch)
    try:
        with torch.no_grad():
            preds, protos = yolo26(images)
            head.split = True
            box_logits, scores, coefficients, split_protos = yolo26(images)
    finally:
        head.split = False
        head.select_branch("one2many")
    assert box_logits.shape[1] == 4
    joined = join_split_head(box_logits.numpy(), scores.numpy(), coefficients.numpy(), (64, 96), [8, 16, 32])
    assert preds[:, :4].std() > 1 and preds[:, 4:7].std() > 1e-4  # boxes and scores vary over the anchors
    np.testing.assert_allclose(joined[:, :4], preds[:, :4].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(joined[:, 4:], preds[:, 4:].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(split_protos.numpy(), protos.numpy())


def test_the_branches_give_different_outputs_and_training_runs_both(yolo26):
    yolo26 = copy.deepcopy(yolo26)  # built, the one-to-one convs are copies of the one-to-many ones: make them differ
    with torch.no_grad():
        for p in yolo26.head.one2one_cv3.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.1)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    features = [torch.rand(1, c, 64 // s, 64 // s) for c, s in zip((64, 128, 256), (8, 16, 32))]
    with torch.no_grad():
        one2many, _ = yolo26(images)
        yolo26.head.select_branch("one2one")
        one2one, _ = yolo26(images)
        yolo26.head.train()  # training returns both branches, whichever one eval runs
        trained = yolo26.head(features)
        yolo26.head.eval()
        yolo26.head.select_branch("one2many")
    assert not torch.allclose(one2many, one2one)
    assert set(trained) == {"one2many", "one2one", "semantic"}
    for branch in ("one2many", "one2one"):
        levels, coeffs, protos = trained[branch]
        assert [tuple(level.shape[1:]) for level in levels] == [(4 + 3, 8, 8), (4 + 3, 4, 4), (4 + 3, 2, 2)]
        assert coeffs.shape == (1, 32, 64 + 16 + 4) and protos.shape == (1, 32, 16, 16)
    assert not torch.allclose(trained["one2many"][0][0], trained["one2one"][0][0])
    assert trained["semantic"].shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"reg_max": 0}, "reg_max must be an integer from 1 to 64, got 0"),
        ({"reg_max": "16"}, "reg_max must be an integer from 1 to 64, got '16'"),
        ({"end2end": "yes"}, "end2end must be true or false, got 'yes'"),
    ],
)
def test_bad_family_keys_are_one_line_errors(tmp_path, edit, message):
    import yaml

    cfg = yaml.safe_load((Path(edgeseg.models.MODELS_DIR) / "yolo26-seg.yaml").read_text())
    cfg.update(edit)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(EdgesegError, match=message) as info:
        load_model_config(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from edgeseg.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth"), n_train=4, n_val=2, seed=3, progress=False)


@pytest.mark.slow
def test_yolov8_trains_from_the_cli(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["train", "--model", "yolov8n-seg.yaml", "--data", str(tiny_data), "--epochs", "1",
                                       "--imgsz", "64", "--batch", "2", "--project", str(tmp_path), "--name", "v8"])
    assert result.exit_code == 0, result.output
    trained = edgeseg.Model(tmp_path / "v8" / "weights" / "last.pt")
    assert family_name(trained.net.yaml) == "YOLOv8n-seg" and trained.checkpoint["epoch"] == 0


@pytest.mark.slow
def test_yolo26_trains_from_its_yaml_on_the_cli(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["train", "--model", "yolo26n-seg.yaml", "--data", str(tiny_data), "--epochs", "2",
                                       "--imgsz", "64", "--batch", "2", "--optimizer", "MuSGD", "--project", str(tmp_path), "--name", "y26"])
    assert result.exit_code == 0, result.output
    trained = edgeseg.Model(tmp_path / "y26" / "weights" / "last.pt")
    assert family_name(trained.net.yaml) == "YOLO26n-seg" and trained.checkpoint["epoch"] == 1
    state = torch.load(tmp_path / "y26" / "weights" / "last.pt", weights_only=True)["optimizer"]
    assert any(group.get("use_muon") for group in state["param_groups"])
    rows = (tmp_path / "y26" / "results.csv").read_text().splitlines()
    header = [h.strip() for h in rows[0].split(",")]
    assert {"train/l1_loss", "train/sem_loss"} <= set(header) and "train/dfl_loss" not in header
    assert all(float(row.split(",")[header.index("train/sem_loss")]) > 0 for row in rows[1:])


def test_distance_l1_loss_known_answer():
    """YOLO26's box-side term: |Δ distance| x stride, over the width (l, r) or height (t, b), averaged over the four sides."""
    from edgeseg.loss import distance_l1_loss

    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    target = torch.tensor([[1.5, 2.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    loss = distance_l1_loss(pred, target, torch.tensor([[8.0], [32.0]]), torch.tensor([320.0, 640.0]))  # h 320, w 640
    np.testing.assert_allclose(loss.numpy(), [[(0.5 * 8 / 640 + 1.0 * 8 / 320) / 4], [0.0]], rtol=1e-6)


def test_a_head_without_dfl_decodes_the_distances_in_the_loss():
    from edgeseg.loss import SegmentationLoss

    loss = SegmentationLoss(nc=2, reg_max=1)
    anchors = torch.tensor([[4.5, 2.5]])
    boxes = loss.bbox_decode(anchors, torch.tensor([[[1.0, 2.0, 3.0, 0.5]]]))
    np.testing.assert_allclose(boxes.numpy(), [[[3.5, 0.5, 7.5, 3.0]]])


@pytest.mark.slow
def test_a_genuine_yolo26_checkpoint_fine_tunes_both_branches(tiny_data, tmp_path):
    """Fine-tuning the genuine Ultralytics YOLO26 fixture: the one-to-many and the one-to-one weights both move."""
    genuine = Path(__file__).parents[1] / "fixtures" / "ultralytics" / "yolo26-seg-tiny-u8.4.190.pt"
    result = CliRunner().invoke(main, ["train", "--model", str(genuine), "--data", str(tiny_data), "--epochs", "1",
                                       "--imgsz", "128", "--batch", "2", "--project", str(tmp_path), "--name", "y26"])
    assert result.exit_code == 0, result.output
    before, after = edgeseg.Model(genuine).net.state_dict(), edgeseg.Model(tmp_path / "y26" / "weights" / "last.pt").net.state_dict()
    one2one = [k for k in before if ".one2one_" in k and k.endswith("weight")]
    one2many = [k.replace("one2one_", "") for k in one2one]
    assert one2one and sum(not torch.allclose(before[k], after[k]) for k in one2one) >= len(one2one) // 2
    assert sum(not torch.allclose(before[k], after[k]) for k in one2many) >= len(one2many) // 2
    csv = (tmp_path / "y26" / "results.csv").read_text().splitlines()
    header, row = csv[0].split(","), csv[1].split(",")
    l1 = float(row[[h.strip() for h in header].index("train/l1_loss")])
    assert 0 < l1 < 10  # the L1 distance term, finite
