"""ModelMeta: what a runtime needs to know about an artifact, embedded in the artifact itself."""

import json
from dataclasses import asdict, dataclass, field

from edgeseg.runtimes.errors import is_int
from edgeseg.runtimes.meta.limits import MAX_CLASSES, MAX_DETECTIONS, MAX_IMGSZ, MAX_METADATA_BYTES, MAX_NAME_CHARS

META_KEY = "edgeseg"  # the key under which artifacts store ``ModelMeta.to_json()``
DEFAULT_IMGSZ = 640  # px: the input size assumed when a file records none (a dynamic graph, an old checkpoint)


@dataclass
class ModelMeta:
    """Facts about an exported model that travel inside the artifact.

    Attributes:
        names: ``{class id: name}``.
        imgsz: (height, width) of the model input in pixels.
        stride: the largest stride (input sizes must be multiples of it).
        nm: number of mask coefficients / prototype channels.
        batch: the static batch size, or 0 for a dynamic batch.
        dynamic: True when the input height/width may vary.
        precision: ``fp32``, ``fp16``, ``bf16`` (an fp32 OpenVINO IR computed in bf16) or ``int8``.
        task: always ``segment``.
        channels: input channel order.
        normalization: how pixels are scaled (``0-1``: uint8 / 255, no mean/std).
        layout: input tensor layout (``NCHW``; ``NHWC`` for TFLite).
        source_hash: SHA-256 prefix of the source checkpoint.
        version: the edgeseg version that exported it.
        outputs: output tensor names in contract order (``preds``, ``protos``) or split-head names.
        extra: target-specific facts (e.g. quantisation scales), JSON-serialisable.
        nms: empty, or for an end-to-end artifact (NMS in the graph, ``edgeseg.runtimes.pipeline.end2end``)
            its settings: ``conf`` (the lowest score it reports), ``iou`` and ``max_det``.
        selection: how detections are picked from the head's candidates: ``nms`` (one-to-many
            heads) or ``topk`` (a one-to-one head, YOLO26's ``one2one`` branch: the best scores,
            no NMS; ``edgeseg.runtimes.pipeline.topk``).
        topk: 0, or for an end-to-end artifact of a one-to-one head (top-k in the graph, no NMS)
            the number of detections it reports per image.
    """

    names: dict[int, str]
    imgsz: tuple[int, int]
    stride: int = 32
    nm: int = 32
    batch: int = 1
    dynamic: bool = False
    precision: str = "fp32"
    task: str = "segment"
    channels: str = "RGB"
    normalization: str = "0-1"
    layout: str = "NCHW"
    source_hash: str = ""
    version: str = ""
    outputs: list[str] = field(default_factory=lambda: ["preds", "protos"])
    extra: dict = field(default_factory=dict)
    nms: dict = field(default_factory=dict)
    selection: str = "nms"
    topk: int = 0

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    @property
    def end2end(self) -> bool:
        """True when NMS or top-k is in the graph: the first output is (B, max_det, 6 + nm) detections."""
        return bool(self.nms) or self.topk > 0

    @property
    def head_shape(self) -> tuple[int, int]:
        """(axis, size) of the first output's fixed channel axis: (2, 6 + nm) end to end, else (1, 4 + nc + nm)."""
        return (2, 6 + self.nm) if self.end2end else (1, 4 + self.nc + self.nm)

    def to_json(self) -> str:
        """Compact JSON (class ids become string keys, restored by ``from_json``)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    def check(self) -> "ModelMeta":
        """Raise ValueError naming the first field outside its type or limit (see ``edgeseg.runtimes.meta.limits``); else self."""
        h, w = self.imgsz
        checks = (
            (0 < len(self.names) <= MAX_CLASSES, f"{len(self.names)} class names (1 to {MAX_CLASSES})"),
            (sorted(self.names) == list(range(len(self.names))), "class ids are not 0..nc-1"),
            (all(len(n) <= MAX_NAME_CHARS for n in self.names.values()), f"a class name longer than {MAX_NAME_CHARS} characters"),
            (self.stride in (8, 16, 32, 64, 128), f"stride {self.stride} (8, 16, 32, 64 or 128)"),
            (0 < h <= MAX_IMGSZ and 0 < w <= MAX_IMGSZ, f"imgsz {h}x{w} (1 to {MAX_IMGSZ} px a side)"),
            (0 < self.nm <= 1024, f"nm {self.nm} mask coefficients (1 to 1024)"),
            (0 <= self.batch <= 1024, f"batch {self.batch} (0 = dynamic, up to 1024)"),
            (not self.nms or _nms_ok(self.nms), f"nms {self.nms} (conf and iou from 0 to 1, max_det 1 to {MAX_DETECTIONS})"),
            (self.selection in ("nms", "topk"), f"selection {self.selection!r} (nms or topk)"),
            (is_int(self.topk) and 0 <= self.topk <= MAX_DETECTIONS, f"topk {self.topk!r} (0 to {MAX_DETECTIONS})"),
            (not self.nms or self.selection == "nms", "nms settings on an artifact whose detections are picked by top-k"),
            (not self.topk or self.selection == "topk", "a top-k end-to-end artifact whose detections are picked by NMS"),
        )
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)
        return self

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMeta":
        """Parse and check ``to_json`` output; unknown keys from newer versions are ignored.

        ``names`` may be a ``{id: name}`` object or a list; ``imgsz`` an int or [height, width].

        Raises:
            ValueError: not JSON, larger than ``MAX_METADATA_BYTES``, a missing ``names``/``imgsz``,
                or a field of the wrong type or outside its limit (the message says which).
        """
        if len(text) > MAX_METADATA_BYTES:
            raise ValueError(f"{len(text)} bytes of metadata (at most {MAX_METADATA_BYTES})")
        data = json.loads(text)
        if not isinstance(data, dict) or "names" not in data or "imgsz" not in data:
            raise ValueError("edgeseg metadata must be a JSON object with 'names' and 'imgsz'")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["names"] = parse_names(known["names"])
        known["imgsz"] = parse_imgsz(known["imgsz"])
        for key in ("stride", "nm", "batch", "topk"):
            if key in known and not is_int(known[key]):
                raise ValueError(f"{key} is {known[key]!r}, not an integer")
        for key in ("precision", "task", "channels", "normalization", "layout", "source_hash", "version", "selection"):
            if key in known and not isinstance(known[key], str):
                raise ValueError(f"{key} is {known[key]!r}, not a string")
        if not isinstance(known.get("outputs", []), list) or not all(isinstance(o, str) for o in known.get("outputs", [])):
            raise ValueError("outputs must be a list of tensor names")
        for key in ("extra", "nms"):
            if not isinstance(known.get(key, {}), dict):
                raise ValueError(f"{key} must be an object")
        if not isinstance(known.get("dynamic", False), bool):
            raise ValueError("dynamic must be true or false")
        return cls(**known).check()


def _nms_ok(nms: dict) -> bool:
    """True for ``{"conf": 0..1, "iou": 0..1, "max_det": 1..MAX_DETECTIONS}``."""
    number = (int, float)
    return (
        set(nms) == {"conf", "iou", "max_det"}
        and all(isinstance(nms[k], number) and not isinstance(nms[k], bool) and 0 <= nms[k] <= 1 for k in ("conf", "iou"))
        and is_int(nms["max_det"])
        and 0 < nms["max_det"] <= MAX_DETECTIONS
    )


def parse_names(raw, numbers_as_names: bool = False) -> dict[int, str]:
    """``{id: name}`` from an object with integer (or integer-string) keys or a list of names.

    The one reader of class names in metadata: edgeseg's JSON and the plain keys other tools write.

    Args:
        raw: the decoded value.
        numbers_as_names: take a number as a name (``str()`` of it), as the plain keys may hold.

    Raises:
        ValueError: any other type, more than MAX_CLASSES names, a key that is not an integer,
            or a name that is not a string.
    """
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict) or len(raw) > MAX_CLASSES:
        raise ValueError(f"names must be an object {{class id: name}} or a list of at most {MAX_CLASSES} names")
    names = {}
    for key, value in raw.items():
        if numbers_as_names and (is_int(value) or isinstance(value, float)):
            value = str(value)
        if not (is_int(key) or (isinstance(key, str) and key.strip().isdigit())) or not isinstance(value, str):
            raise ValueError(f"names entry {str(key)[:20]!r}: {str(value)[:20]!r} is not 'class id: name'")
        names[int(key)] = value
    return dict(sorted(names.items()))


def parse_imgsz(raw) -> tuple[int, int]:
    """(height, width) from an int or a [height, width] list (or tuple).

    Raises:
        ValueError: anything else (null, floats, bools, strings, another length).
    """
    pair = [raw, raw] if is_int(raw) else raw
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(is_int(v) for v in pair)):
        raise ValueError(f"imgsz is {str(raw)[:40]}, not an integer or [height, width]")
    return int(pair[0]), int(pair[1])
