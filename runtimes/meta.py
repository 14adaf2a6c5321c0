"""ModelMeta: what a runtime needs to know about an artifact, embedded in the artifact itself."""

import json
from dataclasses import asdict, dataclass, field

META_KEY = "edgeseg"  # the key under which artifacts store ``ModelMeta.to_json()``


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
        precision: ``fp32``, ``fp16`` or ``int8``.
        task: always ``segment``.
        channels: input channel order.
        normalization: how pixels are scaled (``0-1``: uint8 / 255, no mean/std).
        layout: input tensor layout (``NCHW``; ``NHWC`` for TFLite).
        source_hash: SHA-256 prefix of the source checkpoint.
        version: the edgeseg version that exported it.
        outputs: output tensor names in contract order (``preds``, ``protos``) or split-head names.
        extra: target-specific facts (e.g. quantisation scales), JSON-serialisable.
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

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    def to_json(self) -> str:
        """Compact JSON (class ids become string keys, restored by ``from_json``)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMeta":
        """Parse ``to_json`` output; unknown keys from newer versions are ignored.

        Raises:
            ValueError: not JSON, or missing ``names``/``imgsz``.
        """
        data = json.loads(text)
        if not isinstance(data, dict) or "names" not in data or "imgsz" not in data:
            raise ValueError("edgeseg metadata must be a JSON object with 'names' and 'imgsz'")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["names"] = {int(k): str(v) for k, v in known["names"].items()}
        imgsz = known["imgsz"]
        known["imgsz"] = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
        return cls(**known)
