"""The one way to get a network: ``load_network`` (a checkpoint) and ``build_network`` (a model YAML).

``import_ultralytics`` writes an Ultralytics checkpoint as an edgeseg one.

Everything that needs a ``SegmentationNet`` from a file (the ``.pt`` backend, export, training,
the ``Model`` facade) calls these, and gets the network together with the ModelMeta a runtime
needs to run it (docs/ARCHITECTURE.md, "ModelMeta").
"""

import logging
import re
from pathlib import Path
from typing import NamedTuple

from edgeseg.interop.ultralytics import is_ultralytics_checkpoint, ultralytics_checkpoint
from edgeseg.models.config import load_model_config
from edgeseg.nn.checkpoint import (
    atomic_torch_save,
    build_checkpoint,
    check_state_dict,
    checkpoint_parts,
    file_hash,
    load_checkpoint,
)
from edgeseg.nn.net import SegmentationNet, check_architecture
from edgeseg.runtimes.errors import EdgesegError, first_line
from edgeseg.runtimes.meta.model_meta import DEFAULT_IMGSZ, ModelMeta
from edgeseg.runtimes.version import __version__

LOGGER = logging.getLogger("edgeseg")

WEIGHT_KEYS = ("state_dict", "optimizer", "ema", "model_state")  # left out of ``Network.checkpoint``
_FAMILY_PREFIX = re.compile(r"^(yolov?\d+)(?=-)")  # the family in a YAML stem: yolov8-seg, yolo11-seg, yolo26-seg


class Network(NamedTuple):
    """A network and the facts that travel with it.

    Attributes:
        net: the ``SegmentationNet`` in eval mode (BatchNorm not fused).
        meta: its ModelMeta as the ``.pt`` runtime sees it: names, square ``imgsz`` (pixels), stride,
            nm, dynamic batch and size, ``source_hash`` of the checkpoint file ('' when built).
        checkpoint: the checkpoint's record without weights or training state (``train_args``,
            ``epoch``, ``metrics`` …), or None for a network built from a YAML.
        source: the file it came from (checkpoint or YAML path as given).
    """

    net: SegmentationNet
    meta: ModelMeta
    checkpoint: dict | None
    source: str

    @property
    def name(self) -> str:
        """A short label: the checkpoint file stem, or the YAML stem with its scale (``yolo11n-seg``)."""
        return network_name(self.source, self.net, self.checkpoint is not None)


def network_name(source: str, net: SegmentationNet, from_checkpoint: bool) -> str:
    """The checkpoint file stem, or for a YAML-built network the YAML stem with its scale letter (``yolo26n-seg``)."""
    stem = Path(source).stem
    scale = net.yaml.get("scale")
    if from_checkpoint or scale is None or scale in stem:
        return stem
    return _FAMILY_PREFIX.sub(lambda m: m.group(1) + scale, stem, count=1)


def network_meta(net: SegmentationNet, imgsz, source_hash: str = "") -> ModelMeta:
    """The ModelMeta of an in-memory network: dynamic batch and input size, fp32, detections picked as its head's branch needs.

    Args:
        net: the network (its names, stride and head's ``nm`` are read).
        imgsz: the input size it is meant for in pixels, an int or (height, width).
        source_hash: the checkpoint's hash prefix ('' for a network not read from a file).
    """
    hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    return ModelMeta(
        names=dict(net.names),
        imgsz=hw,
        stride=int(net.stride.max()),
        nm=net.head.nm,
        batch=0,
        dynamic=True,
        source_hash=source_hash,
        version=__version__,
        selection="topk" if net.head.branch == "one2one" else "nms",
    )


def load_network(path: str | Path) -> Network:
    """Read a ``.pt`` checkpoint into a network without running any of its code.

    An edgeseg checkpoint is read with ``load_checkpoint`` (weights only, sizes checked); an
    Ultralytics YOLOv8-seg, YOLO11-seg or YOLO26-seg one is converted in memory by ``edgeseg.interop.ultralytics``. The
    architecture and every weight shape are checked before the weights are loaded.

    Raises:
        EdgesegError: a missing, unreadable, hostile or foreign file, naming it and the problem.
    """
    source = str(path)
    try:
        ckpt = load_checkpoint(source)
    except EdgesegError:
        if not is_ultralytics_checkpoint(source):
            raise
        ckpt = ultralytics_checkpoint(source)
        LOGGER.info(
            f"imported Ultralytics checkpoint {source} (scale {ckpt['config'].get('scale')}, "
            f"{len(ckpt['names'])} classes, weights from '{ckpt['source']['weights']}'); "
            "`edgeseg import` writes it as an edgeseg checkpoint"
        )
    cfg, names, imgsz = checkpoint_parts(ckpt, source)
    check_state_dict(ckpt["state_dict"], check_architecture(cfg, source), source)
    net = SegmentationNet(cfg, names=names)
    net.load_state_dict(ckpt["state_dict"])
    net.eval()
    record = {k: v for k, v in ckpt.items() if k not in WEIGHT_KEYS}
    return Network(net, network_meta(net, imgsz, file_hash(source)), record, source)


def build_network(source: str | Path, nc: int | None = None, names=None) -> Network:
    """A network with random weights from a model YAML (a path or a bundled name like ``yolo11n-seg.yaml``).

    Args:
        source: the YAML.
        nc: number of classes (default: ``len(names)``, else the YAML's ``nc``).
        names: class names, ``{id: name}`` or a list (default: ``class0`` …).

    Raises:
        EdgesegError: an unknown or invalid YAML, or names that do not match ``nc``.
    """
    source = str(source)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if names and nc is None:
        nc = len(names)
    cfg = load_model_config(source, nc=nc)
    if names and len(names) != cfg["nc"]:
        raise EdgesegError(f"{source}: {len(names)} names given for nc={cfg['nc']}")
    check_architecture(cfg, source)
    net = SegmentationNet(cfg, names=names).eval()
    return Network(net, network_meta(net, DEFAULT_IMGSZ), None, source)


def open_network(source: str | Path, nc: int | None = None, names=None) -> Network:
    """``load_network`` for a ``.pt``, ``build_network`` for a ``.yaml``/``.yml`` (``nc`` and ``names`` apply to YAMLs).

    Raises:
        EdgesegError: any other suffix, or what those raise.
    """
    suffix = Path(str(source)).suffix.lower()
    if suffix == ".pt":
        return load_network(source)
    if suffix in (".yaml", ".yml"):
        return build_network(source, nc=nc, names=names)
    raise EdgesegError(f"{source}: expected a model YAML (.yaml) or an edgeseg checkpoint (.pt)")


def import_ultralytics(path: str | Path, out: str | Path | None = None) -> Path:
    """Convert an Ultralytics YOLOv8-seg, YOLO11-seg or YOLO26-seg checkpoint into an edgeseg checkpoint file (written atomically).

    Args:
        path: the Ultralytics ``.pt``.
        out: the edgeseg ``.pt`` to write (default: ``<stem>-edgeseg.pt`` beside ``path``).

    Returns:
        ``out``; it loads with ``torch.load(weights_only=True)`` and ``edgeseg.Model(out)``,
        carrying ``train_args``, ``epoch``, ``best_fitness``, ``metrics`` and ``source`` where
        the original had them (see :func:`ultralytics_checkpoint`).

    Raises:
        EdgesegError: see :func:`ultralytics_checkpoint`; also when the weights do not fit the
            architecture of the embedded model.yaml, or ``out`` is ``path`` itself.
    """
    path = Path(path)
    out = Path(out) if out is not None else path.with_name(f"{path.stem}-edgeseg.pt")
    if out.resolve() == path.resolve():
        raise EdgesegError(f"{out}: is the file being imported; choose another output path")
    ckpt = ultralytics_checkpoint(path)
    net = SegmentationNet(ckpt["config"], names=ckpt["names"])
    try:
        missing, unexpected = net.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as exc:
        raise EdgesegError(f"{path}: weights do not fit the model.yaml architecture ({first_line(exc)})") from None
    if missing or unexpected:
        raise EdgesegError(
            f"{path}: weights do not fit the model.yaml architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing + unexpected)[0]})"
        )
    extra = {k: ckpt[k] for k in ("train_args", "epoch", "best_fitness", "metrics", "source") if ckpt[k] is not None}
    written = atomic_torch_save(build_checkpoint(net, ckpt["imgsz"], **extra), out)
    LOGGER.info(f"imported Ultralytics checkpoint {path} -> {written}")
    return written
