"""Checkpoints written by Ultralytics itself (tests/fixtures/ultralytics): imported, run, exported; hostile edits refused.

The fixtures are the ``best.pt`` of short trainings with Ultralytics 8.3 and 8.4 (YOLO11-seg) and
8.4 (YOLOv8-seg, YOLO26-seg), and Ultralytics' own raw outputs of those models (see the fixtures'
README.md). Ultralytics is not
installed here: everything below reads the files with edgeseg alone. The hostile variants are
the same genuine files with a few opcodes spliced into their ``data.pkl`` (or a record added),
so every other byte is what Ultralytics wrote.
"""

import collections
import importlib
import io
import json
import os
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edgeseg
import edgeseg.runtimes
from edgeseg.cli import main
from edgeseg.data.synth import synthesize
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.interop import torch_pickle
from edgeseg.interop.torch_pickle import pickle_globals
from edgeseg.nn.network import import_ultralytics
from hostile import Case, check

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ultralytics"
CHECKPOINTS = ("yolo11-seg-tiny-u8.3.253", "yolo11-seg-tiny-u8.4.190", "yolov8-seg-tiny-u8.4.190", "yolo26-seg-tiny-u8.4.190")
EDGESEG = Path(sys.executable).with_name("edgeseg")
NC = 5
# What genuine best.pt files of both versions and all three families name, besides ultralytics.nn.* and torch.nn.modules.* classes.
GENUINE_GLOBALS = {
    "__builtin__.set", "collections.OrderedDict", "torch.Size", "torch.FloatStorage", "torch.HalfStorage",
    "torch.LongStorage", "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor_v2",
}


def genuine(stem: str) -> Path:
    return FIXTURES / f"{stem}.pt"


def version_of(stem: str) -> str:
    """The Ultralytics version that wrote a fixture: ``yolo26-seg-tiny-u8.4.190`` -> ``8.4.190``."""
    return stem.rsplit("-u", 1)[1]


def reference(stem: str) -> dict[str, np.ndarray]:
    """Ultralytics' raw outputs: ``input`` (1, 3, 128, 128), ``preds`` (1, 4 + 5 + 32, 336), ``protos`` (1, 32, 32, 32),
    and for YOLO26 ``preds_one2one`` (the one-to-one branch) and ``detections`` (1, 300, 38, its end-to-end top-k)."""
    with np.load(FIXTURES / f"{stem}.outputs.npz") as npz:
        return dict(npz)


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A small synthetic dataset with the fixtures' five classes (2 train, 4 val images)."""
    return synthesize(tmp_path_factory.mktemp("synth"), n_train=2, n_val=4, seed=1, progress=False)


def assert_preds_match(preds: np.ndarray, expected: np.ndarray) -> None:
    """(1, 4 + nc + 32, 336) raw outputs equal: boxes to 1e-3 px, scores to 1e-4 relative, coefficients to 1e-4."""
    assert preds.shape == expected.shape == (1, 4 + NC + 32, 336)
    np.testing.assert_allclose(preds[:, :4], expected[:, :4], rtol=0, atol=1e-3)  # xywh, px
    np.testing.assert_allclose(preds[:, 4 : 4 + NC], expected[:, 4 : 4 + NC], rtol=1e-4, atol=1e-7)  # scores
    np.testing.assert_allclose(preds[:, 4 + NC :], expected[:, 4 + NC :], rtol=0, atol=1e-4)  # mask coefficients


def assert_matches_ultralytics(net, stem: str) -> None:
    """``net``'s raw eval outputs on the reference input equal Ultralytics' (boxes in px), from every branch it has."""
    ref = reference(stem)
    head = net.head
    with torch.no_grad():
        preds, protos = net.eval()(torch.from_numpy(ref["input"]))
        assert_preds_match(preds.numpy(), ref["preds"])
        np.testing.assert_allclose(protos.numpy(), ref["protos"], rtol=0, atol=1e-4)
        assert head.branches == (["one2many", "one2one"] if "preds_one2one" in ref else ["one2many"])
        if "preds_one2one" in ref:
            head.select_branch("one2one")
            try:
                one2one, _ = net(torch.from_numpy(ref["input"]))
            finally:
                head.select_branch("one2many")
            assert_preds_match(one2one.numpy(), ref["preds_one2one"])


# ----------------------------------------------------------------------------------------------
# The genuine files work
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_genuine_file_names_only_known_globals(stem):
    with zipfile.ZipFile(genuine(stem)) as archive:
        names = pickle_globals(archive.read("best/data.pkl"))
    assert {n for n in names if not n.startswith(("ultralytics.nn.", "torch.nn.modules."))} == GENUINE_GLOBALS


@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_model_matches_ultralytics_outputs(stem, one_torch_thread):
    model = edgeseg.Model(genuine(stem))
    assert model.names == {0: "circle", 1: "rectangle", 2: "triangle", 3: "star", 4: "hexagon"} and model.imgsz == 128
    assert model.checkpoint["source"]["version"] == version_of(stem)
    assert_matches_ultralytics(model.net, stem)


PREDICTED = [stem for stem in CHECKPOINTS if (FIXTURES / f"{stem}.predict.npz").is_file()]


def predicted(stem: str, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ultralytics' predict on image ``i`` of the fixture: boxes (N, 4) xyxy px, scores, classes, masks (N, 128, 128) bool."""
    with np.load(FIXTURES / f"{stem}.predict.npz") as npz:
        masks = np.unpackbits(npz[f"masks_{i}"], axis=1)[:, : 128 * 128].reshape(-1, 128, 128).astype(bool)
        return npz[f"boxes_{i}"], npz[f"scores_{i}"], npz[f"classes_{i}"], masks


def test_every_family_has_a_predict_reference():
    assert PREDICTED == ["yolo11-seg-tiny-u8.4.190", "yolov8-seg-tiny-u8.4.190", "yolo26-seg-tiny-u8.4.190"]


@pytest.mark.parametrize("stem", PREDICTED)
def test_predict_matches_ultralytics_predict(stem, one_torch_thread):
    """``runtimes.load(<.pt>).predict`` gives what ``YOLO(<.pt>).predict`` gave: the same detections, the same masks
    except along the box edges. YOLO26 included: Ultralytics 8.4 predicts it with the one-to-many branch and NMS.

    The images are 128 x 128, the model's input size, so no letterbox or scaling differs. A mask
    pixel is kept when its centre lies inside the box in edgeseg, when its index does in
    Ultralytics (``crop_mask``), so masks may differ in the row or column a box edge crosses.
    """
    with np.load(FIXTURES / f"{stem}.predict.npz") as npz:
        images, conf = npz["images"], float(npz["conf"])
    runtime = edgeseg.runtimes.load(genuine(stem))
    centres = np.arange(128) + 0.5
    total = 0
    for i, result in enumerate(runtime.predict(list(images), conf=conf, imgsz=128)):
        boxes, scores, classes, masks = predicted(stem, i)
        assert len(result) == len(boxes)
        total += len(boxes)
        np.testing.assert_allclose(result.boxes, boxes, rtol=0, atol=1e-3)
        np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(result.classes, classes)
        for ours, theirs, (x1, y1, x2, y2) in zip(result.masks, masks, result.boxes):
            on_edge = (np.minimum(abs(centres - x1), abs(centres - x2)) <= 1)[None, :] | (
                np.minimum(abs(centres - y1), abs(centres - y2)) <= 1
            )[:, None]
            assert not (ours ^ theirs)[~on_edge].any()
    assert total >= 15  # detections compared (24, 18 and 25 in the fixtures)


def test_one2one_top_k_matches_ultralytics_end_to_end_head(one_torch_thread):
    """YOLO26's one-to-one branch, picked by ``topk_detections`` on the host, equals Ultralytics' end-to-end head output."""
    from edgeseg.runtimes.pipeline.topk import topk_detections

    stem = "yolo26-seg-tiny-u8.4.190"
    ref = reference(stem)
    net = edgeseg.Model(genuine(stem)).net.eval()
    net.head.select_branch("one2one")
    with torch.no_grad():
        preds, _ = net(torch.from_numpy(ref["input"]))
    boxes, scores, classes, coeffs = topk_detections(preds.numpy()[0], NC, conf=0.0, max_det=300)
    expected = ref["detections"][0]  # (300, 6 + 32): x1, y1, x2, y2, score, class, coefficients
    assert len(boxes) == 300
    np.testing.assert_array_equal(classes, expected[:, 5].astype(np.int64))
    np.testing.assert_allclose(scores, expected[:, 4], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(boxes, expected[:, :4], rtol=0, atol=1e-3)
    np.testing.assert_allclose(coeffs, expected[:, 6:], rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_cli_import_then_model_matches_ultralytics(stem, tmp_path, one_torch_thread):
    out = tmp_path / "x.pt"
    proc = subprocess.run([EDGESEG, "import", genuine(stem), "-o", out], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    family = stem.split("-")[0].replace("yolo", "YOLO")
    found = f"found Ultralytics {version_of(stem)} {family}n-seg: nc=5, 5 class names, weights from 'model', epoch -1, imgsz 128"
    assert found in proc.stdout
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["train_args"]["epochs"] == (1 if stem.startswith("yolo11") else 60) and raw["source"]["file"] == genuine(stem).name
    assert_matches_ultralytics(edgeseg.Model(out).net, stem)


@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_cli_predict_and_val(stem, synth, tmp_path, one_torch_thread):
    result = run("predict", genuine(stem), synth.parent / "images" / "val", "--conf", "0.001", "--save-txt",
                 "--project", tmp_path, "--name", "p")
    assert result.exit_code == 0, result.output
    assert re.search(r"^4 images, \d+ detections", result.output, re.MULTILINE), result.output
    assert len(list((tmp_path / "p" / "labels").glob("*.txt"))) > 0
    result = run("val", genuine(stem), "--data", synth)
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s+all\s+4\s+\d+", result.output, re.MULTILINE), result.output


@pytest.mark.slow
@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_cli_onnx_export_matches_ultralytics(stem, synth, tmp_path, one_torch_thread):
    """The exported graph passes verification and its raw outputs equal Ultralytics' own.

    A 1-epoch model scores every anchor about 0.002: NMS over such near-equal scores keeps boxes
    that float noise picks, which verification must not count as a disagreement (its ranking
    replay and near-tie rule).
    """
    out = tmp_path / "m.onnx"
    result = run("export", genuine(stem), "--target", "onnx", "--imgsz", 128, "--data", synth, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"exported {out}" in result.output and ", verified, " in result.output
    assert json.loads(out.with_name("m.onnx.verify.json").read_text())["agreement"] == 1.0
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = reference(stem)
    preds, protos = session.run(["preds", "protos"], {"images": ref["input"]})
    # The export folds BatchNorm into the convs, the reference is unfused: float32 rounding of
    # the folded weights moves boxes (up to ~600 px here) by up to ~2e-6 of their value.
    np.testing.assert_allclose(preds[:, :4], ref["preds"][:, :4], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(preds[:, 4:], ref["preds"][:, 4:], rtol=0, atol=1e-4)
    np.testing.assert_allclose(protos, ref["protos"], rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Hostile edits of the genuine files
# ----------------------------------------------------------------------------------------------


class _Call:
    """Pickles as ``func(*args)`` (a REDUCE of the global ``func``)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _StorageRef:
    """Pickles as torch's persistent reference to storage record ``data/<key>`` of ``numel`` ``kind`` elements."""

    def __init__(self, key: str, numel: int, kind: str = "HalfStorage"):
        self.key, self.numel, self.kind = key, numel, kind


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", getattr(torch, obj.kind), obj.key, "cpu", obj.numel)
        return None


def opcodes(obj, memo: bool = False) -> bytes:
    """The protocol-2 opcodes that push ``obj`` (no PROTO, no STOP); without memo entries unless ``memo``."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue() if memo else pickletools.optimize(buf.getvalue())
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    return data[2:-1]


def rebuild_tensor(ref: _StorageRef, size: tuple, stride: tuple) -> _Call:
    return _Call(torch._utils._rebuild_tensor_v2, ref, 0, size, stride, False, collections.OrderedDict())


def spliced(data: bytes, item: bytes, first: bool) -> bytes:
    """``data.pkl`` with ``item`` (opcodes that set a key of the checkpoint dict) run first or last.

    First: right after the top-level dict is made, before anything else is read (``item`` must not
    use the memo, which the genuine opcodes use after it). Last: after every genuine key, just
    before STOP, so it replaces a genuine key's value and may use the memo freely.
    """
    head = b"\x80\x02}q\x00"
    assert data.startswith(head + b"(") and data.endswith(b"u.")
    return head + item + data[len(head):-1] + b"." if first else data[:-1] + item + b"."


def set_key(key: str, value: bytes) -> bytes:
    """Opcodes for ``checkpoint[key] = <value>`` (SETITEM on the dict on top of the stack)."""
    return opcodes(key) + value + b"s"


def local_header(name: str, method: int, stored: int, size: int, crc: int) -> bytes:
    """A zip local file header: ``stored`` bytes follow it in the file, ``size`` once inflated."""
    encoded = name.encode()
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, stored, size, len(encoded), 0) + encoded


def write_zip(path: Path, records: list[tuple], chain: tuple[str, ...] = (), kernel: bytes = b"") -> Path:
    """A zip archive of ``(name, payload, method, uncompressed size, crc)`` records, headers written as given.

    ``payload`` is what the file holds for the record (already compressed for method 8), so a
    record may claim any uncompressed size, as a zip bomb does. The ``chain`` records follow,
    stored and overlapping: each one's data is every later one's header and data, then
    ``kernel``, so together they claim far more bytes than the file has.
    """
    out, entries = bytearray(), []
    for name, payload, method, size, crc in records:
        entries.append((name, len(out), method, len(payload), size, crc))
        out += local_header(name, method, len(payload), size, crc) + payload
    tail, nested = kernel, []
    for name in reversed(chain):
        nested.append((name, len(tail), zlib.crc32(tail)))
        tail = local_header(name, 0, len(tail), len(tail), zlib.crc32(tail)) + tail
    offset = len(out)
    for name, size, crc in reversed(nested):
        entries.append((name, offset, 0, size, size, crc))
        offset += 30 + len(name.encode())
    out += tail
    central = bytearray()
    for name, offset, method, stored, size, crc in entries:
        encoded = name.encode()
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, stored, size, len(encoded), 0, 0, 0, 0, 0, offset
        ) + encoded
    out += central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0)
    path.write_bytes(bytes(out))
    return path


def hostile_copy(stem: str, path: Path, item: bytes, first: bool = True, extra: tuple = (), **chain) -> Path:
    """The genuine checkpoint with ``item`` spliced into its ``data.pkl``, ``extra`` records (and a ``chain``) added."""
    with zipfile.ZipFile(genuine(stem)) as archive:
        records = []
        for info in archive.infolist():
            payload = archive.read(info)
            if info.filename == "best/data.pkl":
                payload = spliced(payload, item, first)
            records.append((info.filename, payload, 0, len(payload), zlib.crc32(payload)))
    return write_zip(path, records + list(extra), **chain)


def deflated_zeros(nbytes: int) -> bytes:
    """A raw deflate stream that inflates to ``nbytes`` zero bytes (a multiple of 1 MiB) from about nbytes / 1000 bytes."""
    mib = 1 << 20
    assert nbytes % mib == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(mib)) + packer.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no back-references past it
    return block * (nbytes // mib) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def nested_shared_lists(levels: int = 40) -> list:
    """``[a, a]`` nested ``levels`` deep: a few hundred pickle bytes that expand to 2**levels values when walked."""
    value = []
    for _ in range(levels):
        value = [value, value]
    return value


def assert_refused(path: Path, message: str) -> None:
    """Both entry points refuse ``path`` with one line naming it and matching ``message``; nothing is written."""
    for load in (import_ultralytics, edgeseg.Model):
        with pytest.raises(EdgesegError, match=message) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert not list(path.parent.glob("*-edgeseg.pt"))


@pytest.mark.parametrize("stem", CHECKPOINTS)
@pytest.mark.parametrize("first", [True, False], ids=["first", "last"])
def test_code_running_payload_in_a_genuine_file_is_refused(stem, first, tmp_path):
    marker = tmp_path / "pwned"
    path = hostile_copy(stem, tmp_path / "evil.pt", set_key("train_args", opcodes(_Call(os.system, f"touch {marker}"))), first)
    assert_refused(path, r"refused: (posix|os|nt)\.system \(the checkpoint asks to call it")
    result = run("import", path, "-o", tmp_path / "x.pt")
    assert result.exit_code == 1 and result.output.startswith(f"error: {path}: refused: posix.system")
    assert result.output.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


def test_the_spliced_payload_really_runs_under_a_plain_unpickler(tmp_path):
    """Control for the test above: the same bytes do run the command when torch.load may call anything."""
    marker = tmp_path / "ran"
    path = hostile_copy(CHECKPOINTS[-1], tmp_path / "evil.pt", set_key("x", opcodes(_Call(os.system, f"touch {marker}"))))
    with pytest.raises(ModuleNotFoundError, match="ultralytics"):  # the command ran first, then the model class
        torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


# (module, name) of globals a BUILD may target: allowlisted ones and an Ultralytics class (a stand-in class).
BUILD_TARGETS = [
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("__builtin__", "set"),
    ("datetime", "datetime"),
    ("torch", "Size"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("numpy", "dtype"),
    ("ultralytics.nn.tasks", "SegmentationModel"),
]


def global_state(module: str, name: str) -> list:
    """What a BUILD on the global could change: attributes and defaults of the real object and of what edgeseg gives instead."""
    module = "builtins" if module == "__builtin__" else module
    objects = [torch_pickle._ALLOWED.get((module, name))]  # None for a stand-in class: a new one each load
    if not module.startswith("ultralytics"):
        objects.append(getattr(importlib.import_module(module), name))
    return [(dict(vars(o)) if hasattr(o, "__dict__") else None, getattr(o, "__defaults__", None)) for o in objects]


BUILD_STATES = {
    "dict": {"pwned": True},  # __setstate__, else __dict__.update
    "slots": (None, {"pwned": True, "__defaults__": (1, 2, 3, 4)}),  # setattr for each slot item
}


@pytest.mark.parametrize("stem", CHECKPOINTS)
@pytest.mark.parametrize("state", BUILD_STATES)
@pytest.mark.parametrize("module, name", BUILD_TARGETS)
def test_build_on_a_global_in_a_genuine_file_is_refused(stem, state, module, name, tmp_path):
    before = global_state(module, name)
    item = set_key("x", b"c%s\n%s\n" % (module.encode(), name.encode()) + opcodes(BUILD_STATES[state]) + b"b")
    path = hostile_copy(stem, tmp_path / "evil.pt", item)
    assert_refused(path, r"refused: the pickle sets attributes on .*; only objects it builds itself may get state")
    assert global_state(module, name) == before
    assert not hasattr(collections.OrderedDict, "pwned") and not hasattr(torch_pickle._rebuild_tensor, "pwned")


@pytest.mark.parametrize("stem", CHECKPOINTS)
@pytest.mark.parametrize(
    "size, stride, problem",
    [
        ((1 << 30, 1 << 30), (0, 0), "repeats storage elements"),  # 2**60 elements over 2
        ((1 << 40,), (1,), "reaches element 1,099,511,627,775 of a storage of 2 elements"),
        ((2, 2), (1, 1), "repeats storage elements"),
    ],
)
def test_tensor_view_past_or_repeating_its_storage_is_refused(stem, size, stride, problem, tmp_path):
    tiny = ("best/data/tiny", bytes(4), 0, 4, zlib.crc32(bytes(4)))
    item = set_key("x", opcodes(rebuild_tensor(_StorageRef("tiny", 2), size, stride)))
    path = hostile_copy(stem, tmp_path / "evil.pt", item, extra=(tiny,))
    assert_refused(path, rf"refused: a tensor view that {re.escape(problem)}")


@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_compressed_storage_record_is_refused_before_inflating(stem, tmp_path):
    size = 3 << 30  # 3 GiB of zeros from ~3 MB (CRC left 0: a reader inflates everything before it could notice)
    bomb = ("best/data/bomb", deflated_zeros(size), 8, size, 0)
    item = set_key("x", opcodes(rebuild_tensor(_StorageRef("bomb", size // 2), (size // 2,), (1,))))
    path = hostile_copy(stem, tmp_path / "evil.pt", item, extra=(bomb,))
    assert_refused(path, rf"refused: record best/data/bomb is compressed \([\d,]+ bytes inflating to {size:,}\)")


@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_overlapping_records_cannot_read_more_than_the_file(stem, tmp_path):
    """Stored records nested in each other's data (a non-recursive zip bomb) claim O(n²) bytes from O(n)."""
    names = tuple(f"best/data/o{i}" for i in range(1000))
    path = hostile_copy(stem, tmp_path / "evil.pt", b"", chain=names, kernel=bytes(1000))
    with zipfile.ZipFile(path) as archive:
        sizes = {name: archive.getinfo(name).file_size for name in names}
    assert sum(sizes.values()) > 10 * path.stat().st_size
    refs = [rebuild_tensor(_StorageRef(n.rpartition("/")[2], sizes[n], "ByteStorage"), (sizes[n],), (1,)) for n in names]
    path = hostile_copy(stem, tmp_path / "evil.pt", set_key("x", opcodes(refs)), chain=names, kernel=bytes(1000))
    assert_refused(path, r"refused: the records read add up to more than [\d,]+ bytes \(the file's size")


@pytest.mark.parametrize("stem", CHECKPOINTS)
@pytest.mark.parametrize("key", ["train_args", "train_metrics", "version"])
def test_shared_nested_lists_are_refused_not_expanded(stem, key, tmp_path):
    item = set_key(key, opcodes(nested_shared_lists(), memo=True))
    path = hostile_copy(stem, tmp_path / "evil.pt", item, first=False)
    assert len(item) < 1000
    assert_refused(path, rf"refused: {key} holds more than 100,000 values or 10,000,000 characters \(shared values counted")


def test_nested_tuple_key_is_refused_before_hashing(tmp_path):
    """A dict key of tuples sharing their halves 60 levels deep would take 2**60 steps to hash."""
    key = b")q\x000" + b"h\x00h\x00\x86q\x000" * 60 + b"h\x00"  # t = () then t = (t, t) 60 times, in memo slot 0
    item = opcodes("x") + b"}" + key + b"K\x01s" + b"s"  # checkpoint["x"] = {t60: 1}
    path = hostile_copy(CHECKPOINTS[-1], tmp_path / "evil.pt", item)
    assert_refused(path, r"refused: a dict key or set member that is a tuple, not a plain value")


def _hostile_file(folder: Path, kind: str) -> None:
    """Write ``m.pt`` into ``folder``: the 8.4 genuine file with one hostile edit."""
    stem, path = CHECKPOINTS[-1], folder / "m.pt"
    if kind == "stride0":
        tiny = ("best/data/tiny", bytes(4), 0, 4, zlib.crc32(bytes(4)))
        item = set_key("x", opcodes(rebuild_tensor(_StorageRef("tiny", 2), (1 << 30, 1 << 30), (0, 0))))
        hostile_copy(stem, path, item, extra=(tiny,))
    elif kind == "bomb":
        size = 3 << 30
        item = set_key("x", opcodes(rebuild_tensor(_StorageRef("bomb", size // 2), (size // 2,), (1,))))
        hostile_copy(stem, path, item, extra=(("best/data/bomb", deflated_zeros(size), 8, size, 0),))
    else:
        hostile_copy(stem, path, set_key("train_args", opcodes(nested_shared_lists(), memo=True)), first=False)


IMPORT = ["import", "m.pt", "-o", "out.pt"]
HARNESS_CASES = [
    Case("stride0", partial(_hostile_file, kind="stride0"), argv=IMPORT, expect=r"m\.pt: refused: a tensor view that repeats"),
    Case("zip_bomb", partial(_hostile_file, kind="bomb"), argv=IMPORT, expect=r"m\.pt: refused: record best/data/bomb is compressed"),
    Case(
        "nested_lists", partial(_hostile_file, kind="lists"), code="import edgeseg\nedgeseg.Model('m.pt')",
        expect=r"m\.pt: refused: train_args holds more than",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", HARNESS_CASES, ids=[c.id for c in HARNESS_CASES])
def test_hostile_genuine_files_fail_fast_in_bounded_memory(case, tmp_path):
    """In a fresh process capped at 1 GiB above idle: one error line within the harness' time limit, nothing written."""
    check(case, tmp_path)
