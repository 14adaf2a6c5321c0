"""The YOLO-seg output layout that graph backends (ONNX Runtime, OpenVINO) bind to.

Which of a graph's two outputs is ``preds`` and which ``protos``; the ModelMeta of a graph that
carries none (from the output shapes); the static facts of the graph's input, which take
precedence over the metadata; and outputs a converter wrote channels last, put back channels first. Each backend passes its engine's view of the outputs: their names,
their rank and their shapes with None for a dynamic dimension.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import DEFAULT_IMGSZ, META_KEY, ModelMeta

LOGGER = logging.getLogger("edgeseg")

LAYOUT = "(B, 4+nc+nm, A) preds and (B, nm, H/4, W/4) protos"


def bind_outputs(outputs: Sequence, names_of: Callable, rank_of: Callable, meta: ModelMeta | None, path, found: str) -> tuple:
    """(preds, protos) among a graph's ``outputs``: by the metadata's output names when those are its two
    outputs, else by rank (3: preds, 4: protos; a graph converted from PyTorch may leave an output unnamed).

    Args:
        outputs: the engine's output objects; ``names_of(o)`` gives the names of one, ``rank_of(o)`` its rank.
        meta: the file's ModelMeta, or None.
        path: the file, for messages; found: the outputs described, for messages.

    Raises:
        EdgesegError: not two outputs of ranks 3 and 4.
    """
    named = {name: o for o in outputs for name in names_of(o)}
    if meta is not None and len(outputs) == 2 and len(meta.outputs) == 2 and all(n in named for n in meta.outputs):
        return named[meta.outputs[0]], named[meta.outputs[1]]
    ranked = {rank_of(o): o for o in outputs}
    if len(outputs) != 2 or set(ranked) != {3, 4}:
        raise EdgesegError(f"{path}: outputs do not have the YOLO-seg layout {LAYOUT}; found {found}")
    return ranked[3], ranked[4]


def layout_meta(meta: ModelMeta | None, preds_shape: Sequence, protos_shape: Sequence, path, found: str) -> ModelMeta:
    """``meta`` checked against the outputs' shapes where they are static; without metadata, one read from the layout.

    Args:
        meta: the file's ModelMeta, or None.
        preds_shape, protos_shape: the outputs' shapes, None for a dynamic dimension.
        path: the file, for messages; found: the outputs described, for messages.

    Returns:
        ``meta``, or for None a ModelMeta with nc = C - 4 - nm from the shapes, DEFAULT_IMGSZ and class
        ids as names (logged as a warning).

    Raises:
        EdgesegError: the shapes contradict the metadata, or without metadata they are dynamic or not the layout.
    """
    axis, size = meta.head_shape if meta is not None else (1, None)
    channels, nm = preds_shape[axis], protos_shape[1]
    if meta is None:
        if channels is None or nm is None or channels - 4 - nm < 1:
            raise EdgesegError(f"{path}: outputs do not have the YOLO-seg layout {LAYOUT}; found {found}")
        meta = ModelMeta(names={i: str(i) for i in range(channels - 4 - nm)}, imgsz=(DEFAULT_IMGSZ, DEFAULT_IMGSZ), nm=nm)
        LOGGER.warning(f"{path}: no '{META_KEY}' metadata; using the output layout (nc={meta.nc}, names = class ids)")
    elif channels is not None and nm is not None and (channels, nm) != (size, meta.nm):
        raise EdgesegError(f"{path}: metadata says nc={meta.nc}, nm={meta.nm} but the outputs are {found}")
    return meta


def with_input_shape(meta: ModelMeta, batch: int | None, height: int | None, width: int | None) -> ModelMeta:
    """``meta`` with the graph input's static facts: its batch (0 when dynamic), and its size unless dynamic."""
    static_hw = height is not None and width is not None
    return dataclasses.replace(meta, batch=batch or 0, dynamic=not static_hw, imgsz=(height, width) if static_hw else meta.imgsz)


def channels_first(value: np.ndarray, channels: int, nhwc: bool) -> np.ndarray:
    """An output as (B, channels, A) or (B, channels, h, w), transposed when the file wrote it channels last.

    A rank-4 output whose second and last axes both equal ``channels`` (protos of a 128 x 128
    input: 32 x 32 x 32) is taken as channels last when the file's input is (``nhwc``), as the
    converters that write an NHWC input write their rank-4 outputs.
    """
    if value.ndim == 4 and (value.shape[1] != channels or (nhwc and value.shape[3] == channels)):
        return np.ascontiguousarray(value.transpose(0, 3, 1, 2))
    if value.ndim == 3 and value.shape[1] != channels:
        return np.ascontiguousarray(value.transpose(0, 2, 1))
    return value
