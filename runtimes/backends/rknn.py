"""RKNN backend: ``<name>_rknn_model/`` folders from edgeseg, on a Rockchip board's NPU with rknn-toolkit-lite2.

The folder holds ``model.rknn`` (compiled for one platform, ``meta.extra["rknn"]["platform"]``)
and ``edgeseg.json`` (the ModelMeta). The model takes one image per call, (1, H, W, 3) uint8 RGB
pixels (the 1/255 scaling is inside it), so the letterboxed batch is turned back into the pixels
it came from. Its outputs follow the ONNX graph it was built from, in ``meta.outputs`` order:
``preds``, ``protos`` (fp16), or the split head ``box_logits`` / ``scores`` / ``coefficients``
/ ``protos`` (int8), whose boxes are decoded here (``head_decode.join_split_head``) so that
each part keeps its own int8 scale.

rknn-toolkit-lite2 runs only on the board (aarch64 Linux with ``librknnrt.so``) and is not on
PyPI: install the wheel from Rockchip's rknn-toolkit2 releases. ``EDGESEG_RKNN_CORES`` picks the
NPU cores on boards with several (``auto``, ``0``, ``1``, ``2``, ``0_1``, ``0_1_2``, ``all``;
default ``auto``). Elsewhere the folder's metadata loads and prediction is unavailable; export
verification runs the model in rknn-toolkit2's simulator instead (``edgeseg.targets.rknn``).
"""

import os
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends.base import Backend, PredictUnavailable
from edgeseg.runtimes.backends.folder_meta import read_folder_meta
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.head_decode import join_split_head

MODEL = "model.rknn"
CORES_ENV = "EDGESEG_RKNN_CORES"
CORE_MASKS = {"auto": 0, "0": 1, "1": 2, "2": 4, "0_1": 3, "0_1_2": 7, "all": 0xFFFF}  # RKNNLite.NPU_CORE_* values


def to_pixels(batch: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) float32 RGB in [0, 1] → (B, H, W, 3) uint8 RGB pixels (the letterboxed image's own values)."""
    return np.ascontiguousarray(np.rint(batch.transpose(0, 2, 3, 1) * 255).clip(0, 255).astype(np.uint8))


def to_contract(outputs: list[np.ndarray], meta: ModelMeta, path: str) -> tuple[np.ndarray, np.ndarray]:
    """An RKNN model's outputs (``meta.outputs`` order) → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32.

    Raises:
        EdgesegError: the number or shapes of the outputs do not match the metadata.
    """
    if len(outputs) != len(meta.outputs):
        raise EdgesegError(f"{path}: the model gave {len(outputs)} outputs, its metadata names {len(meta.outputs)} ({meta.outputs})")
    parts = dict(zip(meta.outputs, (np.asarray(o, dtype=np.float32) for o in outputs)))
    protos = parts["protos"]
    if "preds" in parts:
        preds = parts["preds"]
    else:
        preds = join_split_head(parts["box_logits"], parts["scores"], parts["coefficients"], meta.imgsz, meta.extra["strides"])
    if preds.ndim != 3 or preds.shape[1] != meta.head_shape[1] or protos.ndim != 4 or protos.shape[1] != meta.nm:
        raise EdgesegError(
            f"{path}: outputs {preds.shape} and {protos.shape} do not match the metadata "
            f"(nc={meta.nc}, nm={meta.nm}: (B, {meta.head_shape[1]}, A) and (B, {meta.nm}, H/4, W/4))"
        )
    return preds, protos


def core_mask() -> int:
    """The NPU core mask of ``EDGESEG_RKNN_CORES`` (default ``auto``).

    Raises:
        EdgesegError: a value not in ``CORE_MASKS``.
    """
    value = os.environ.get(CORES_ENV, "auto").strip().lower() or "auto"
    if value not in CORE_MASKS:
        raise EdgesegError(f"{CORES_ENV}={value!r}: expected one of {', '.join(CORE_MASKS)}")
    return CORE_MASKS[value]


class RknnBackend(Backend):
    """An RKNNLite runtime bound to the ``preds``/``protos`` contract, one image per call.

    Args:
        path: the ``*_rknn_model`` folder.
        device: ignored beyond the usual check; the model runs on the board's NPU (``EDGESEG_RKNN_CORES``).
    """

    name = "rknn"

    def __init__(self, path: str, device: str = "cpu"):
        folder = Path(path)
        if not (folder / MODEL).is_file():
            raise EdgesegError(f"{folder}: no {MODEL} (an edgeseg RKNN folder holds {MODEL} and edgeseg.json)")
        meta = read_folder_meta(folder, MODEL)
        if meta.batch != 1 or meta.dynamic:
            raise EdgesegError(f"{folder}: RKNN models take one image of a fixed size; the metadata says batch {meta.batch}")
        if meta.outputs not in (["preds", "protos"], ["box_logits", "scores", "coefficients", "protos"]):
            raise EdgesegError(f"{folder}: unknown RKNN outputs {meta.outputs} in its metadata")
        if "box_logits" in meta.outputs and not {"strides", "reg_max"} <= set(meta.extra):
            raise EdgesegError(f"{folder}: a split-head RKNN model's metadata needs strides and reg_max")
        mask = core_mask()
        try:
            from rknnlite.api import RKNNLite
        except ModuleNotFoundError:
            platform = (meta.extra.get("rknn") or {}).get("platform", "a Rockchip board")
            raise PredictUnavailable(
                f"{folder}: RKNN models run on the NPU of {platform} with rknn-toolkit-lite2 (aarch64, from Rockchip's "
                "rknn-toolkit2 releases, not on PyPI); export verifies them in rknn-toolkit2's simulator"
            ) from None
        self.lite = RKNNLite(verbose=False)
        if self.lite.load_rknn(str(folder / MODEL)) != 0:
            raise EdgesegError(f"{folder / MODEL}: rknn-toolkit-lite2 cannot load it (damaged, or built by another toolkit version)")
        if self.lite.init_runtime(core_mask=mask) != 0:
            raise EdgesegError(
                f"{folder / MODEL}: the NPU runtime did not start (is this the board it was built for, "
                f"{(meta.extra.get('rknn') or {}).get('platform', '?')}, with librknnrt.so installed?)"
            )
        super().__init__(path, meta, device)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1, 3, H, W) float32 → preds (1, 4 + nc + nm, A), protos (1, nm, H / 4, W / 4) float32."""
        outputs = self.lite.inference(inputs=[to_pixels(batch)], data_format="nhwc")
        if outputs is None:
            raise EdgesegError(f"{self.path}: the NPU inference failed (rknn-toolkit-lite2 returned no outputs)")
        return to_contract(outputs, self.meta, self.path)


def load(path: str, device: str | None = None) -> RknnBackend:
    """Open an edgeseg ``*_rknn_model`` folder on the board's NPU.

    Raises:
        PredictUnavailable: rknn-toolkit-lite2 is not installed (any machine but the board).
        EdgesegError: the folder is unusable, or the NPU cannot load or start the model.
    """
    return RknnBackend(path, "cpu" if device is None else device)
