"""Interop: Ultralytics checkpoints imported without running their code; COCO JSON converted and checked."""

import contextlib
import copy
import datetime
import importlib
import importlib.util
import json
import logging
import os
import pickle
import re
import sys
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from pycocotools import mask as mask_util

import edgeseg
from edgeseg.cli import main
from edgeseg.data.check import check_dataset
from edgeseg.interop import torch_pickle
from edgeseg.interop.coco import convert_coco
from edgeseg.interop.coco_geometry import merge_polygons
from edgeseg.interop.ultralytics import is_ultralytics_checkpoint, ultralytics_checkpoint
from edgeseg.nn.network import import_ultralytics
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.io.data_config import img_paths, load_data_config

# Where Ultralytics defines the classes an edgeseg network is made of (its pickles name these paths).
ULTRALYTICS_CLASSES = {
    "ultralytics.nn.tasks": ("SegmentationModel", "DetectionModel"),
    "ultralytics.nn.modules.conv": ("Conv", "DWConv", "Concat"),
    "ultralytics.nn.modules.block": ("C3k2", "C3k", "Bottleneck", "SPPF", "C2PSA", "PSABlock", "Attention", "DFL", "Proto"),
    "ultralytics.nn.modules.head": ("Segment",),
}


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


class _RunsACommand:
    """A pickle payload that would create a file if it were ever unpickled unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@contextlib.contextmanager
def _fake_ultralytics():
    """Empty modules named like Ultralytics' in sys.modules, removed again on exit."""
    names = ["ultralytics", "ultralytics.nn", "ultralytics.nn.modules", *ULTRALYTICS_CLASSES]
    assert not any(n in sys.modules for n in names), "tests must not run beside a real ultralytics"
    modules = {n: types.ModuleType(n) for n in names}
    sys.modules.update(modules)
    try:
        yield modules
    finally:
        for n in names:
            del sys.modules[n]


def write_ultralytics_checkpoint(path, net, model_class="SegmentationModel", yaml_edit=None, ema=None, model_edit=None, **overrides):
    """``torch.save`` ``net`` (an edgeseg SegmentationNet) in Ultralytics' checkpoint layout.

    The network is copied to half precision and every edgeseg module is re-classed as a subclass
    recorded under Ultralytics' module path (``ultralytics.nn.modules.conv.Conv`` …), so the pickle
    names exactly what a real checkpoint names; like older Ultralytics heads, the head keeps
    ``detect = Detect.forward`` (pickled as ``getattr(Detect, "forward")``). ``model_edit`` is
    called with each disguised network before it is saved. The fake modules are gone once this returns.
    """
    with _fake_ultralytics() as modules:
        disguised = {}
        head_module = modules["ultralytics.nn.modules.head"]

        def forward(self, x):
            raise AssertionError("never called")

        forward.__module__, forward.__qualname__ = head_module.__name__, "Detect.forward"
        head_module.Detect = type("Detect", (), {"__module__": head_module.__name__, "forward": forward})

        def disguise(network, top_name):
            network = copy.deepcopy(network).half()
            for module in network.modules():
                base = type(module)
                if not base.__module__.startswith("edgeseg."):
                    continue
                name = top_name if base.__name__ == "SegmentationNet" else base.__name__
                if name not in disguised:
                    home = next(m for m, names in ULTRALYTICS_CLASSES.items() if name in names)
                    disguised[name] = type(name, (base,), {"__module__": home, "__qualname__": name})
                    setattr(modules[home], name, disguised[name])
                module.__class__ = disguised[name]
            network.yaml = {**copy.deepcopy(network.yaml), "yaml_file": "yolo11n-seg.yaml", "channels": 3}
            if yaml_edit:
                yaml_edit(network.yaml)
            network.args = {"task": "segment", "imgsz": 320}
            if model_edit:
                model_edit(network)
            network.model[-1].detect = head_module.Detect.forward
            return network

        ckpt = {
            "date": datetime.datetime(2024, 10, 1, 12, tzinfo=datetime.timezone.utc),
            "version": "8.3.0",
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "best_fitness": None,
            "model": disguise(net, model_class),
            "ema": None if ema is None else disguise(ema, model_class),
            "updates": None,
            "optimizer": None,
            "train_args": {"task": "segment", "imgsz": 320, "epochs": 3, "batch": 16},
            "train_metrics": {"metrics/mAP50(M)": 0.25, "fitness": 0.1},
            **overrides,
        }
        torch.save(ckpt, path)
    return Path(path)


def _randomise_batchnorm(net):
    """Non-trivial BatchNorm statistics and affine parameters, so the comparison covers every buffer."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                ranges = ((module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2), (module.running_mean, -0.2, 0.2), (module.running_var, 0.5, 2.0))
                for tensor, lo, hi in ranges:
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) * (hi - lo) + lo)
                module.num_batches_tracked.fill_(7)


def _outputs(model_or_net, x):
    with torch.no_grad():
        return model_or_net(x)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """An Ultralytics-layout checkpoint of a random nc=3 network, and that network's half→float reference."""
    torch.manual_seed(0)
    model = edgeseg.Model("yolo11n-seg.yaml", names=["person", "car", "dog"])
    _randomise_batchnorm(model.net)
    root = tmp_path_factory.mktemp("ultralytics")
    path = write_ultralytics_checkpoint(root / "yolo11n-seg.pt", model.net)
    reference = copy.deepcopy(model.net).eval()
    reference.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.net.state_dict().items()})
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    return types.SimpleNamespace(model=model, path=path, root=root, x=x, expected=_outputs(reference, x))


def test_import_gives_the_same_outputs_and_metadata(foreign):
    out = foreign.root / "imported.pt"
    result = run("import", foreign.path, "-o", out)
    assert result.exit_code == 0, result.output
    assert "YOLO11n-seg: nc=3, 3 class names, weights from 'model', epoch -1" in result.output
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["names"] == {0: "person", 1: "car", 2: "dog"} and raw["imgsz"] == 320
    assert raw["source"]["weights"] == "model" and raw["source"]["version"] == "8.3.0"
    assert raw["source"]["date"] == "2024-10-01 12:00:00+00:00"
    assert raw["train_args"]["epochs"] == 3 and raw["metrics"]["fitness"] == 0.1
    assert all(v.dtype in (torch.float32, torch.int64) for v in raw["state_dict"].values())
    imported = edgeseg.Model(out)
    preds, protos = _outputs(imported, foreign.x)
    assert torch.equal(preds, foreign.expected[0]) and torch.equal(protos, foreign.expected[1])


def test_model_auto_detects_an_ultralytics_file(foreign, caplog):
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        model = edgeseg.Model(foreign.path)
    assert "imported Ultralytics checkpoint" in caplog.text
    assert not list(foreign.root.glob("*-edgeseg.pt"))  # in memory: nothing written
    preds, protos = _outputs(model, foreign.x)
    assert torch.equal(preds, foreign.expected[0]) and torch.equal(protos, foreign.expected[1])
    assert model.names == {0: "person", 1: "car", 2: "dog"} and model.imgsz == 320


def test_ema_weights_are_preferred(foreign, tmp_path):
    ema = copy.deepcopy(foreign.model.net)
    with torch.no_grad():
        ema.model[0].conv.weight.mul_(2)
    path = write_ultralytics_checkpoint(tmp_path / "last.pt", foreign.model.net, ema=ema, epoch=4)
    ckpt = ultralytics_checkpoint(path)
    assert ckpt["source"]["weights"] == "ema" and ckpt["epoch"] == 4
    assert torch.equal(ckpt["state_dict"]["model.0.conv.weight"], ema.model[0].conv.weight.half().float())


def test_code_running_pickle_is_refused_and_never_runs(foreign, tmp_path):
    marker = tmp_path / "pwned"
    path = write_ultralytics_checkpoint(tmp_path / "evil.pt", foreign.model.net, train_args={"x": _RunsACommand(marker)})
    assert is_ultralytics_checkpoint(path)
    for load in (import_ultralytics, edgeseg.Model):
        with pytest.raises(EdgesegError, match=r"refused: (posix|os|nt)\.system"):
            load(path)
    assert not marker.exists()
    assert not (tmp_path / "evil-edgeseg.pt").exists()


def _zip_pickle(path: Path, data: bytes) -> Path:
    """A torch-zip-shaped archive whose ``data.pkl`` is ``data``."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/byteorder", "little")
    return path


@pytest.mark.parametrize(
    "module, name, arg, refused",
    [
        ("builtins", "eval", "1+1", "builtins.eval"),
        ("__builtin__", "exec", "x=1", "builtins.exec"),
        ("builtins", "getattr", "x", "builtins.getattr on a str"),
        ("subprocess", "check_output", "true", "subprocess.check_output"),
        ("dill._dill", "_load_type", "CodeType", "dill._dill._load_type('CodeType')"),
    ],
)
def test_only_allowlisted_globals_are_resolved(tmp_path, module, name, arg, refused):
    # PROTO 2, GLOBAL module name, BINUNICODE arg, TUPLE1, REDUCE, STOP
    data = b"\x80\x02c%s\n%s\nX%s%s\x85R." % (module.encode(), name.encode(), len(arg).to_bytes(4, "little"), arg.encode())
    with pytest.raises(EdgesegError, match=re.escape(f"refused: {refused}")):
        import_ultralytics(_zip_pickle(tmp_path / "x.pt", data))


def test_inert_torch_and_numpy_values_are_read(foreign, tmp_path):
    """torch.Size, torch.device and numpy scalars (an unstripped Ultralytics 8.3 last.pt has all three) load as plain values."""
    train_args = {"shape": torch.Size([1, 3, 64, 64]), "device": torch.device("cpu"), "lr": np.float64(0.01), "n": np.int32(7)}
    path = write_ultralytics_checkpoint(tmp_path / "last.pt", foreign.model.net, train_args=train_args, best_fitness=np.float32(0.5))
    ckpt = ultralytics_checkpoint(path)
    assert ckpt["train_args"] == {"shape": [1, 3, 64, 64], "device": "cpu", "lr": 0.01, "n": 7}
    assert ckpt["best_fitness"] == 0.5


def _build_pickle(target: bytes, state: bytes) -> bytes:
    """PROTO 2, the opcodes that push ``target``, those that push ``state``, BUILD, STOP."""
    return b"\x80\x02" + target + state + b"b."


# BUILD state: EMPTY_DICT {'pwned': 1} (__setstate__ or __dict__ update); NONE + that dict, TUPLE2 (setattr per
# item); the same with {'__defaults__': (1,)} (replaces a Python function's default arguments).
BUILD_STATES = {
    "dict": b"}X\x05\x00\x00\x00pwnedK\x01s",
    "slots": b"N}X\x05\x00\x00\x00pwnedK\x01s\x86",
    "defaults": b"N}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86",
}
# GLOBALs whose objects a BUILD must never reach, and the object edgeseg gives the pickle for each.
BUILD_GLOBALS = [
    ("collections", "OrderedDict"),
    ("datetime", "datetime"),
    ("torch._utils", "_rebuild_tensor"),
    ("builtins", "set"),
    ("__builtin__", "frozenset"),
    ("torch", "Size"),
    ("torch", "device"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("dill._dill", "_load_type"),
]


def _global_state(module: str, name: str) -> list:
    """Attributes and default arguments of a global and of the object edgeseg resolves it to."""
    module = "builtins" if module == "__builtin__" else module
    objects = (getattr(importlib.import_module(module), name, None), torch_pickle._ALLOWED[module, name])
    return [(dict(vars(o)) if hasattr(o, "__dict__") else None, getattr(o, "__defaults__", None)) for o in objects]


@pytest.mark.parametrize("state", BUILD_STATES)
@pytest.mark.parametrize("module, name", BUILD_GLOBALS)
def test_build_never_changes_a_global(tmp_path, module, name, state):
    before = _global_state(module, name) if importlib.util.find_spec(module.split(".")[0]) else None
    data = _build_pickle(b"c%s\n%s\n" % (module.encode(), name.encode()), BUILD_STATES[state])
    with pytest.raises(EdgesegError, match=r"refused: the pickle sets attributes on .*; only objects it builds itself may get state"):
        import_ultralytics(_zip_pickle(tmp_path / "x.pt", data))
    if before is not None:
        assert _global_state(module, name) == before
    assert not hasattr(torch_pickle._rebuild_tensor, "pwned") and torch_pickle._rebuild_tensor.__defaults__ is None


@pytest.mark.parametrize(
    "target, what",
    [
        (b"cultralytics.nn.tasks\nSegmentationModel\n", "class ultralytics.nn.tasks.SegmentationModel"),  # the class itself
        (b"cdatetime\ntimezone\ncdatetime\ntimedelta\n)R\x85R", "timezone"),  # timezone(timedelta()) is the shared utc
        (b"ctorch\nHalfStorage\n", "_StorageType"),
        (b"c__builtin__\ngetattr\n", "_getattr"),
    ],
)
def test_build_on_objects_the_pickle_did_not_build_is_refused(tmp_path, target, what):
    with pytest.raises(EdgesegError, match=f"refused: the pickle sets attributes on .*{what}"):
        import_ultralytics(_zip_pickle(tmp_path / "x.pt", _build_pickle(target, BUILD_STATES["slots"])))
    assert not hasattr(datetime.timezone.utc, "pwned")


TUPLE_BOMB = b")q\x000" + b"h\x00h\x00\x86q\x000" * 60 + b"h\x00"  # t = () then t = (t, t) 60 times, in memo slot 0: hashing t takes 2**60 steps


@pytest.mark.parametrize(
    "data, refused",
    [
        (b"\x80\x02}" + TUPLE_BOMB + b"K\x01s.", "a dict key or set member that is a tuple"),  # SETITEM
        (b"\x80\x02(" + TUPLE_BOMB + b"K\x01d.", "a dict key or set member that is a tuple"),  # DICT
        (b"\x80\x02\x8f(" + TUPLE_BOMB + b"\x90.", "a dict key or set member that is a tuple"),  # ADDITEMS
        (b"\x80\x02c__builtin__\nset\n(" + TUPLE_BOMB + b"l\x85R.", "a dict key or set member that is a tuple"),  # set([t])
        (b"\x80\x02ccollections\nOrderedDict\n(" + TUPLE_BOMB + b"K\x01\x86l\x85R.", "a dict key or set member that is a tuple"),
        (b"\x80\x02cultralytics.nn.tasks\nSegmentationModel\nX\x01\x00\x00\x00aK\x01s.", "the pickle sets an item of class ultralytics"),
        (b"\x80\x02cultralytics.nn.tasks\nSegmentationModel\n)\x81K\x01a.", "the pickle appends to ultralytics.nn.tasks.SegmentationModel"),
        (b"\x80\x02cdatetime\ndatetime\n)\x81.", "datetime.datetime.__new__"),
    ],
    ids=["setitem", "dict", "additems", "set", "ordereddict", "setitem_class", "append_instance", "newobj"],
)
def test_items_only_go_into_plain_containers(tmp_path, data, refused):
    with pytest.raises(EdgesegError, match=re.escape(f"refused: {refused}")):
        import_ultralytics(_zip_pickle(tmp_path / "x.pt", data))


def _shared_lists(levels: int = 40) -> list:
    """``[a, a]`` nested ``levels`` deep: 2**levels values once walked, a few hundred bytes pickled."""
    value = []
    for _ in range(levels):
        value = [value, value]
    return value


@pytest.mark.parametrize(
    "where, edit",
    [
        ("model.yaml", {"yaml_edit": lambda cfg: cfg.update(head=cfg["head"][:-1] + [[[16, 19, 22], 1, "Segment", _shared_lists()]])}),
        ("names", {"model_edit": lambda net: setattr(net, "names", _shared_lists())}),
        ("train_args", {"train_args": {"a": _shared_lists()}}),
        ("train_args", {"train_args": {"a": [[["x" * 1000] * 1000] * 1000]}}),
    ],
    ids=["yaml", "names", "train_args", "wide"],
)
def test_shared_values_are_counted_at_each_use(foreign, tmp_path, where, edit):
    path = write_ultralytics_checkpoint(tmp_path / "x.pt", foreign.model.net, **edit)
    with pytest.raises(EdgesegError, match=rf"refused: {where} holds more than 100,000 values or 10,000,000 characters"):
        ultralytics_checkpoint(path)


def _share_batchnorm_storage(net):
    """The first BatchNorm's running variance becomes its running mean: two state entries over one storage."""
    bn = net.model[0].bn
    bn.register_buffer("running_var", bn.running_mean)


def test_weights_overlapping_in_one_storage_are_refused(foreign, tmp_path):
    """Many tensors over one storage would each be copied when cast to float32: bytes claimed must not exceed bytes stored."""
    path = write_ultralytics_checkpoint(tmp_path / "x.pt", foreign.model.net, model_edit=_share_batchnorm_storage)
    with pytest.raises(EdgesegError, match=r"refused: the weights claim [\d,]+ bytes over [\d,]+ bytes of storage \(tensors overlap\)"):
        ultralytics_checkpoint(path)


def test_huge_strings_are_refused(foreign, tmp_path):
    path = write_ultralytics_checkpoint(tmp_path / "x.pt", foreign.model.net, license="x" * 1_000_001)
    with pytest.raises(EdgesegError, match=r"refused: license holds a string of 1,000,001 characters \(at most 1,000,000\)"):
        ultralytics_checkpoint(path)


def _detect_head(cfg):
    cfg["head"][-1][2] = "Detect"


def _unknown_blocks(cfg):
    for row in cfg["backbone"] + cfg["head"]:
        row[2] = "C2fAttn" if row[2] == "C3k2" else row[2]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("detect", "a detection-only model (head Detect, not Segment); edgeseg imports YOLOv8-seg, YOLO11-seg and YOLO26-seg"),
        ("block", "model.yaml uses module(s) C2fAttn that edgeseg does not build (it builds YOLOv8-seg, YOLO11-seg and YOLO26-seg: "),
        ("state_dict", "a plain state_dict"),
        ("edgeseg", "already an edgeseg checkpoint"),
        ("plain_pickle", "a plain pickle, not a PyTorch zip checkpoint"),
        ("text", "not a PyTorch checkpoint"),
    ],
)
def test_other_files_get_a_clear_error(foreign, tmp_path, kind, message):
    path = tmp_path / f"{kind}.pt"
    net = foreign.model.net
    if kind == "detect":
        write_ultralytics_checkpoint(path, net, model_class="DetectionModel", yaml_edit=_detect_head)
    elif kind == "block":
        write_ultralytics_checkpoint(path, net, yaml_edit=_unknown_blocks)
    elif kind == "state_dict":
        torch.save(net.state_dict(), path)
    elif kind == "edgeseg":
        foreign.model.save(path)
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"model": None}, protocol=2))
    else:
        path.write_text("hello")
    with pytest.raises(EdgesegError, match=re.escape(message)) as info:
        import_ultralytics(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# COCO
# ----------------------------------------------------------------------------------------------

CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 5, "name": "bird"}]  # -> cat 0, bird 1, dog 2


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: column-major run lengths starting with zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size])))
    runs = np.concatenate(([0], runs)) if flat[0] else runs
    return {"size": list(mask.shape), "counts": [int(r) for r in runs]}


def _ellipse(h, w, center, axes) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
    return mask


def _write_image(folder: Path, name: str, w: int, h: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(len(name) + w).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / name), img)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A small COCO dataset (train + val JSON, PNG images) covering polygons, RLE, crowd and orphan annotations."""
    root = tmp_path_factory.mktemp("coco")
    images = root / "images"
    for name, w, h in (("a.png", 200, 150), ("b.png", 160, 120), ("c.png", 100, 80), ("v.png", 128, 96)):
        _write_image(images, name, w, h)
    compressed = mask_util.encode(np.asfortranarray(_ellipse(120, 160, (50, 60), (30, 22))))
    compressed["counts"] = compressed["counts"].decode("ascii")
    crowd, cat = _ellipse(150, 200, (60, 120), (20, 10)), _ellipse(120, 160, (120, 70), (25, 30))
    train = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 200, "height": 150},
            {"id": 2, "file_name": "b.png", "width": 160, "height": 120},
            {"id": 3, "file_name": "c.png", "width": 100, "height": 80},
        ],
        "categories": CATEGORIES,
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": [[20, 20, 90, 25, 80, 90, 25, 80]]},
            {  # two parts: an occluded dog
                "id": 11, "image_id": 1, "category_id": 7, "iscrowd": 0,
                "segmentation": [[110, 20, 150, 20, 150, 70, 110, 70], [160, 30, 195, 30, 195, 80, 160, 80]],
            },
            {"id": 12, "image_id": 1, "category_id": 3, "iscrowd": 1, "segmentation": _uncompressed_rle(crowd)},
            {"id": 13, "image_id": 2, "category_id": 7, "iscrowd": 0, "segmentation": compressed},
            {"id": 14, "image_id": 2, "category_id": 3, "iscrowd": 0, "segmentation": _uncompressed_rle(cat)},
            {"id": 15, "image_id": 99, "category_id": 3, "iscrowd": 0, "segmentation": [[1, 1, 30, 1, 30, 30]]},
        ],
    }
    val = {
        "images": [{"id": 1, "file_name": "v.png", "width": 128, "height": 96}],
        "categories": CATEGORIES,
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0, "segmentation": [[10, 10, 100, 12, 60, 80]]}],
    }
    (root / "instances_train.json").write_text(json.dumps(train))
    (root / "instances_val.json").write_text(json.dumps(val))
    return types.SimpleNamespace(root=root, images=images, train=train, val=val)


def _coco_mask(ann: dict, h: int, w: int) -> np.ndarray:
    """The annotation's mask as pycocotools rasterises it."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        rles = mask_util.frPyObjects(seg, h, w)
    else:
        rles = [mask_util.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg]
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def _label_masks(label_file: Path, h: int, w: int) -> list[tuple[int, np.ndarray]]:
    """(class, mask) per label line, the polygon filled with OpenCV as the training data loader does."""
    out = []
    for line in label_file.read_text().splitlines():
        values = line.split()
        pts = np.array(values[1:], np.float64).reshape(-1, 2) * [w, h]
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        out.append((int(values[0]), mask.astype(bool)))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools on numpy 2
def test_coco_round_trip(coco, tmp_path, caplog):
    out = tmp_path / "ds"
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        convert_coco(coco.root / "instances_train.json", coco.images, out)
        yaml_path = convert_coco(coco.root / "instances_val.json", coco.images, out)
    summary = next(r.message for r in caplog.records if "instances_train.json ->" in r.message)
    assert "(train): 3 images (1 without objects), 4 objects in 3 classes" in summary
    assert "skipped 1 crowd annotations, 1 annotations of unknown images, 0 of unknown categories, 0 without" in summary

    cfg = load_data_config(yaml_path)
    assert cfg["names"] == {0: "cat", 1: "bird", 2: "dog"}
    assert yaml.safe_load(yaml_path.read_text())["train"] == "images/train"
    labels, stats = scan_labels(img_paths(cfg["train"], cfg["path"]), cfg["nc"], prefix="train")
    assert (stats.images, stats.found, stats.empty, stats.missing, stats.corrupt) == (3, 2, 1, 0, 0)
    _, val_stats = scan_labels(img_paths(cfg["val"], cfg["path"]), cfg["nc"], prefix="val")
    assert (val_stats.images, val_stats.found) == (1, 1)
    assert sorted(int(c) for lb in labels for c in lb.cls) == [0, 0, 2, 2]

    kept = [a for a in coco.train["annotations"] if not a["iscrowd"] and a["image_id"] != 99]
    for image in coco.train["images"]:
        h, w = image["height"], image["width"]
        anns = [a for a in kept if a["image_id"] == image["id"]]
        got = _label_masks(out / "labels" / "train" / Path(image["file_name"]).with_suffix(".txt"), h, w)
        assert len(got) == len(anns)
        for ann, (cls, mask) in zip(anns, got):
            assert cls == {3: 0, 5: 1, 7: 2}[ann["category_id"]]
            assert _iou(mask, _coco_mask(ann, h, w)) >= 0.9, ann["id"]


def test_largest_keeps_one_part_and_merge_joins_all():
    left = np.array([[10, 10], [40, 10], [40, 40], [10, 40]], np.float64)
    right = np.array([[60, 15], [90, 15], [90, 45], [60, 45]], np.float64)
    far = np.array([[20, 70], [45, 70], [45, 95], [20, 95]], np.float64)
    merged = merge_polygons([right, far, left])
    assert len(merged) == 12 + 2 * 2
    filled = np.zeros((100, 100), np.uint8)
    cv2.fillPoly(filled, [np.round(merged).astype(np.int32)], 1)
    union = np.zeros((100, 100), np.uint8)
    cv2.fillPoly(union, [p.astype(np.int32) for p in (left, right, far)], 1)
    assert _iou(filled.astype(bool), union.astype(bool)) > 0.95


def test_largest_mode_and_data_check_cli(coco, tmp_path):
    out = tmp_path / "ds"
    for name in ("instances_train.json", "instances_val.json"):
        result = run("data", "convert", "coco", coco.root / name, "--images", coco.images, "--out", out, "--merge", "largest", "--link")
        assert result.exit_code == 0, result.output
    assert (out / "images" / "train" / "a.png").is_symlink()
    dog = _label_masks(out / "labels" / "train" / "a.txt", 150, 200)[1][1]
    assert dog[:, 110:151].sum() > 0 and dog[:, 156:].sum() == 0  # the larger (left) part only
    png = tmp_path / "check.png"
    result = run("data", "check", out / "data.yaml", "--out", png)
    assert result.exit_code == 0, result.output
    assert "train: 3 images, 2 with labels" in result.output and "classes: cat 2, bird 0, dog 2" in result.output
    assert "val: 1 images" in result.output
    assert cv2.imread(str(png)) is not None
    report = check_dataset(out / "data.yaml")
    assert report["splits"]["train"]["sizes"] == {"192-255x128-191": 1, "128-191x64-127": 1, "64-127x64-127": 1}
    assert report["png"] is None


def test_converting_another_dataset_into_the_same_folder_is_refused(coco, tmp_path):
    out = tmp_path / "ds"
    convert_coco(coco.root / "instances_train.json", coco.images, out)
    other = {**coco.val, "categories": [{"id": 1, "name": "zebra"}]}
    (tmp_path / "other_val.json").write_text(json.dumps(other))
    with pytest.raises(EdgesegError, match="names differ"):
        convert_coco(tmp_path / "other_val.json", coco.images, out)


@pytest.mark.parametrize(
    "args, message",
    [
        (("import", "{tmp}/missing.pt"), "checkpoint not found"),
        (("data", "convert", "coco", "{tmp}/missing.json", "--images", "{tmp}", "--out", "{tmp}/o"), "annotation file not found"),
        (("data", "check", "{tmp}/missing.yaml"), "data YAML not found"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = run(*(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 1
    assert message in result.output and result.output.strip().count("\n") == 0 and "Traceback" not in result.output
