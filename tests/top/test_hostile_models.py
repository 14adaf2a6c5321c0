"""Hostile checkpoints, artifact metadata and arguments: one line, bounded memory, nothing touched.

Every case runs in a fresh process under the harness of ``tests/hostile.py``; a new entry point
or artifact format is one more line in a case list.
"""

import json
import os
import zipfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

import edgeseg
from edgeseg.data.synth import CLASS_NAMES, synthesize
from edgeseg.targets import export
from hostile import MARKER, Case, check, params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A valid yolo11n-seg checkpoint dict (4 classes), an ONNX export of it at 64 px, and a small dataset."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    model = edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES))
    model.imgsz = 64
    path = model.save(folder / "good.pt")
    onnx = export(path, imgsz=64, verify=False).path
    data = synthesize(folder / "data", n_train=2, n_val=2, seed=1, progress=False)
    return {"ckpt": torch.load(path, weights_only=True), "pt": path, "onnx": onnx, "data": data}


# --- checkpoint builders: each writes sandbox/m.pt -----------------------------------------


def _save(sandbox: Path, ckpt: dict) -> None:
    torch.save(ckpt, sandbox / "m.pt")


def _variant(base: dict, change, sandbox: Path) -> None:
    ckpt = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base["ckpt"].items()}
    ckpt["config"] = json.loads(json.dumps(ckpt["config"]))
    change(ckpt)
    _save(sandbox, ckpt)


def _stride0(ckpt):
    ckpt["state_dict"]["model.0.conv.weight"] = torch.zeros(1).expand(1 << 40)


def _nested(ckpt, key="train_args"):
    value = []
    for _ in range(80):
        value = [value, value]
    ckpt[key] = {"data": value} if key == "train_args" else value


def _channels(ckpt):
    ckpt["config"]["backbone"][0][3][0] = 40000


def _scale_width(ckpt):
    ckpt["config"]["scales"]["n"] = [1.0, 4.0, 4096]


def _bad_index(ckpt):
    ckpt["config"]["head"][1][0] = [-1, 57]


def _wrong_shape(ckpt):
    ckpt["state_dict"]["model.0.conv.weight"] = torch.zeros(16, 3, 5, 5)


def _set(key, value, ckpt):
    ckpt[key] = value


def _compressed(base: dict, sandbox: Path) -> None:
    """A torch zip whose one tensor record is deflate-compressed: 256 MB of zeros in a few hundred KB."""
    torch.save({"config": {}, "state_dict": {"w": torch.zeros(64 << 20)}, "names": {}}, sandbox / "plain.pt")
    with zipfile.ZipFile(sandbox / "plain.pt") as src, zipfile.ZipFile(sandbox / "m.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            compress = zipfile.ZIP_DEFLATED if info.filename.endswith("/data/0") else zipfile.ZIP_STORED
            dst.writestr(info.filename, data, compress_type=compress)
    (sandbox / "plain.pt").unlink()


def _payload(sandbox: Path) -> None:
    """A checkpoint whose pickle calls os.system to create the marker file."""

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {sandbox / MARKER}",)

    torch.save({"config": {}, "state_dict": {}, "names": {}, "x": Payload()}, sandbox / "m.pt")


CHECKPOINTS = [
    ("stride0", lambda b, s: _variant(b, _stride0, s), "claims more elements than its storage"),
    ("compressed", _compressed, "is compressed"),
    ("nested_train_args", lambda b, s: _variant(b, _nested, s), "more than .* values"),
    ("channels_40000", lambda b, s: _variant(b, _channels, s), "argument 40000 is not a number up to 4096"),
    ("scale_width_4", lambda b, s: _variant(b, _scale_width, s), "parameters"),
    ("imgsz_65536", lambda b, s: _variant(b, partial(_set, "imgsz", 65536), s), "imgsz 65536 is not an integer from 32 to 4096"),
    ("wrong_shape", lambda b, s: _variant(b, _wrong_shape, s), "weight model.0.conv.weight has shape"),
    ("bad_layer_index", lambda b, s: _variant(b, _bad_index, s), "names a layer that does not come before it"),
    ("config_not_dict", lambda b, s: _variant(b, partial(_set, "config", [1, 2]), s), "not a model config mapping"),
    ("names_string", lambda b, s: _variant(b, partial(_set, "names", "circle"), s), "class names are a str"),
    ("names_mixed_keys", lambda b, s: _variant(b, partial(_set, "names", {0: "a", "x": "b", 2: "c", 3: "d"}), s), "class names must map"),
    ("names_too_few", lambda b, s: _variant(b, partial(_set, "names", ["a"]), s), "1 class names for nc=5"),
    ("payload", lambda b, s: _payload(s), "refused"),
]

ENTRY_POINTS = {
    "info": {"argv": ["info", "m.pt"]},
    "predict": {"argv": ["predict", "m.pt", "data/images/val"]},
    "val": {"argv": ["val", "m.pt", "--data", "data/data.yaml"]},
    "export": {"argv": ["export", "m.pt", "--imgsz", "64"]},
    "train_from": {"argv": ["train", "--model", "m.pt", "--data", "data/data.yaml", "--epochs", "1", "--imgsz", "64", "--workers", "0"]},
    "api_model": {"code": "import edgeseg\nedgeseg.Model('m.pt')"},
    "api_load": {"code": "import edgeseg.runtimes\nedgeseg.runtimes.load('m.pt')"},
}


def _with_data(build, base: dict, sandbox: Path) -> None:
    os.symlink(base["data"].parent, sandbox / "data")
    build(base, sandbox)


def run_case(case: Case, base: dict, sandbox: Path):
    """``hostile.check`` of a case whose ``build`` takes (base, sandbox)."""
    return check(replace(case, build=partial(case.build, base)), sandbox)


EVERY_ENTRY_POINT = {"stride0", "nested_train_args", "channels_40000", "payload"}  # the others: CLI predict + API
CHECKPOINT_CASES = [
    Case(f"{name}-{entry}", build=partial(_with_data, build), expect=expect, **how)
    for name, build, expect in CHECKPOINTS
    for entry, how in ENTRY_POINTS.items()
    if name in EVERY_ENTRY_POINT or entry in ("predict", "api_model")
]


@pytest.mark.parametrize("case", params(CHECKPOINT_CASES))
def test_hostile_checkpoint(case, base, tmp_path):
    run_case(case, base, tmp_path)


def _resume_state(sandbox: Path, ckpt: dict) -> None:
    ckpt.update(model_state=ckpt["state_dict"], optimizer={"state": {}, "param_groups": []}, ema_updates=1, epoch=0, last_opt_step=0)
    ckpt["train_args"] = {"data": "data/data.yaml", "imgsz": 64, "workers": 0, "project": str(sandbox / "elsewhere")}


def test_resume_of_a_hostile_checkpoint_is_refused(base, tmp_path):
    def build(base, sandbox):
        _with_data(lambda b, s: _variant(b, partial(_resume_state, s), s), base, sandbox)

    case = Case("resume_bad_optimizer", build=build, argv=["train", "--resume", "m.pt"], expect="m.pt: its training state does not fit")
    run_case(case, base, tmp_path)
    assert not (tmp_path / "elsewhere").exists()


# --- artifact metadata: each writes sandbox/m.onnx -----------------------------------------


def _onnx_meta(base: dict, change, sandbox: Path) -> None:
    import onnx

    model = onnx.load(str(base["onnx"]))
    for prop in model.metadata_props:
        if prop.key == "edgeseg":
            meta = json.loads(prop.value)
            change(meta)
            prop.value = json.dumps(meta)
    onnx.save(model, str(sandbox / "m.onnx"))
    os.symlink(base["data"].parent, sandbox / "data")


ONNX_METADATA = [
    ("imgsz_null", lambda m: m.update(imgsz=None), "imgsz is None, not an integer"),
    ("imgsz_huge", lambda m: m.update(imgsz=65536), "imgsz 65536x65536"),
    ("stride_0", lambda m: m.update(stride=0), "stride 0"),
    ("names_number", lambda m: m.update(names=7), "names must be an object"),
    ("names_bad_key", lambda m: m.update(names={"a": "x"}), "is not 'class id: name'"),
    ("nm_string", lambda m: m.update(nm="32"), "nm is '32', not an integer"),
]

META_CASES = [
    Case(f"onnx_{name}-{entry}", build=lambda b, s, change=change: _onnx_meta(b, change, s), expect=expect, **how)
    for name, change, expect in ONNX_METADATA
    for entry, how in {
        "predict": {"argv": ["predict", "m.onnx", "data/images/val"]},
        "api_load": {"code": "import edgeseg.runtimes\nedgeseg.runtimes.load('m.onnx')"},
    }.items()
]


def _openvino_meta(base: dict, change, sandbox: Path) -> None:
    import openvino as ov

    from edgeseg.runtimes.backends.openvino_files import RT_INFO_PATH

    model = ov.Core().read_model(str(base["onnx"]))
    meta = json.loads(edgeseg.runtimes.load(base["onnx"]).meta.to_json())
    change(meta)
    model.set_rt_info(json.dumps(meta), RT_INFO_PATH)
    ov.save_model(model, str(sandbox / "m_openvino_model" / "m.xml"))


def _engine_meta(base: dict, change, sandbox: Path) -> None:
    from edgeseg.runtimes.backends.tensorrt_file import HEADER

    meta = json.loads(edgeseg.runtimes.load(base["onnx"]).meta.to_json())
    change(meta)
    text = json.dumps(meta).encode()
    (sandbox / "m.engine").write_bytes(HEADER.pack(len(text)) + text + b"engine bytes")


META_CASES += [
    Case(f"openvino_{name}", build=lambda b, s, change=change: _openvino_meta(b, change, s), expect=expect,
         code="import edgeseg.runtimes\nedgeseg.runtimes.load('m_openvino_model')")
    for name, change, expect in ONNX_METADATA
] + [
    Case(f"tensorrt_header_{name}", build=lambda b, s, change=change: _engine_meta(b, change, s), expect=expect,
         code="from edgeseg.runtimes.backends.tensorrt_file import read_engine\nread_engine('m.engine')")
    for name, change, expect in ONNX_METADATA
]


@pytest.mark.parametrize("case", params(META_CASES))
def test_hostile_artifact_metadata(case, base, tmp_path):
    run_case(case, base, tmp_path)


def test_metadata_names_as_a_list_are_read(base, tmp_path):
    _onnx_meta(base, lambda m: m.update(names=list(CLASS_NAMES)), tmp_path)
    runtime = edgeseg.runtimes.load(tmp_path / "m.onnx")
    assert runtime.names == dict(enumerate(CLASS_NAMES))


# --- arguments: out-of-range values, devices, output paths ----------------------------------


def _model_and_data(base: dict, sandbox: Path) -> None:
    os.symlink(base["pt"], sandbox / "m.pt")
    os.symlink(base["data"].parent, sandbox / "data")


def _a_file(name: str, base: dict, sandbox: Path) -> None:
    _model_and_data(base, sandbox)
    (sandbox / name).write_text("user data\n")


def _user_folder(base: dict, sandbox: Path) -> None:
    _model_and_data(base, sandbox)
    (sandbox / "mine.onnx").mkdir()
    (sandbox / "mine.onnx" / "notes.txt").write_text("do not delete\n")


def _model_yaml_bomb(base: dict, sandbox: Path) -> None:
    _model_and_data(base, sandbox)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    (sandbox / "bomb-seg.yaml").write_text("\n".join(lines) + "\nnc: *a8\n")


GENUINE = sorted((Path(__file__).parents[1] / "fixtures" / "ultralytics").glob("*.pt"))


def _import_onto_folder(base: dict, sandbox: Path) -> None:
    os.symlink(GENUINE[-1], sandbox / "u.pt")
    (sandbox / "out.pt").mkdir()
    (sandbox / "out.pt" / "notes.txt").write_text("do not delete\n")


TRAIN = ["train", "--data", "data/data.yaml", "--epochs", "1", "--workers", "0"]
ARG_CASES = [
    Case("predict_conf_2", _model_and_data, ["predict", "m.pt", "data/images/val", "--conf", "2"], expect="--conf"),
    Case("predict_conf_neg", _model_and_data, ["predict", "m.pt", "data/images/val", "--conf", "-1"], expect="--conf"),
    Case("predict_iou_2", _model_and_data, ["predict", "m.pt", "data/images/val", "--iou", "2"], expect="--iou"),
    Case("val_iou_neg", _model_and_data, ["val", "m.pt", "--data", "data/data.yaml", "--iou", "-1"], expect="--iou"),
    Case("val_conf_2", _model_and_data, ["val", "m.pt", "--data", "data/data.yaml", "--conf", "2"], expect="--conf"),
    Case("predict_imgsz_100000", _model_and_data, ["predict", "m.pt", "data/images/val", "--imgsz", "100000"], expect="--imgsz"),
    Case("train_imgsz_33", _model_and_data, [*TRAIN, "--imgsz", "33"], expect="imgsz 33 must be a multiple of 32"),
    Case("train_imgsz_100000", _model_and_data, [*TRAIN, "--imgsz", "100000"], expect="--imgsz"),
    Case("export_imgsz_100000", _model_and_data, ["export", "m.pt", "--imgsz", "100000"], expect="imgsz"),
    Case("export_device_7", _model_and_data, ["export", "m.pt", "--device", "7"], expect="--device 7: CUDA is not available"),
    Case("train_device_0_1", _model_and_data, [*TRAIN, "--device", "0,1"], expect="--device 0,1: CUDA is not available"),
    Case("predict_device_7", _model_and_data, ["predict", "m.pt", "data/images/val", "--device", "7"], expect="m.pt: device .7.: CUDA is not available"),
    Case("export_out_under_a_file", partial(_a_file, "notes.txt"), ["export", "m.pt", "--out", "notes.txt/m.onnx"], expect="notes.txt: exists and is not a folder"),
    Case("export_out_user_folder", _user_folder, ["export", "m.pt", "--imgsz", "64", "--out", "mine.onnx"], expect="mine.onnx: is an existing folder"),
    Case("train_project_is_a_file", partial(_a_file, "proj"), [*TRAIN, "--imgsz", "64", "--project", "proj"], expect="proj: exists and is not a folder"),
    Case("predict_project_is_a_file", partial(_a_file, "proj"), ["predict", "m.pt", "data/images/val", "--project", "proj"], expect="proj: exists and is not a folder"),
    Case("model_yaml_alias_bomb-info", _model_yaml_bomb, ["info", "bomb-seg.yaml"], expect="bomb-seg.yaml: YAML"),
    Case("model_yaml_alias_bomb-train", _model_yaml_bomb, [*TRAIN, "--model", "bomb-seg.yaml"], expect="bomb-seg.yaml: YAML"),
    Case("import_onto_a_folder", _import_onto_folder, ["import", "u.pt", "-o", "out.pt"], expect="out.pt: is a folder"),
    Case("bench_bad_data", _model_and_data, ["bench", "m.pt", "--data", "missing.yaml", "--targets", "onnx"], expect="missing.yaml"),
    Case("api_predict_conf_2", _model_and_data, code="import edgeseg\nlist(edgeseg.Model('m.pt').predict('data/images/val', conf=2))", expect="conf must be a number from 0 to 1"),
    Case("api_val_iou_neg", _model_and_data, code="import edgeseg.runtimes as r\nr.load('m.pt').val('data/data.yaml', iou=-0.5)", expect="iou must be a number from 0 to 1"),
    Case("api_predict_imgsz", _model_and_data, code="import edgeseg.runtimes\nlist(edgeseg.runtimes.load('m.pt').predict('data/images/val', imgsz=100000))", expect="imgsz must be"),
    Case("api_train_imgsz_33", _model_and_data, code="from edgeseg.train.trainer import Trainer\nTrainer({'data': 'data/data.yaml', 'imgsz': 33})", expect="imgsz 33"),
]


@pytest.mark.parametrize("case", params(ARG_CASES))
def test_hostile_arguments(case, base, tmp_path):
    run_case(case, base, tmp_path)
