"""What an export is verified on: the images (and labels) and both models' outputs on them."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.data.synth import render_sample, sample_rng
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.evaluation.validate import split_labels
from edgeseg.runtimes.io.data_config import load_data_config
from edgeseg.runtimes.io.images import read_image
from edgeseg.runtimes.pipeline.loop import infer_batches

MAX_IMAGES = 32  # dataset val images used (the first, sorted by path)
SYNTHETIC_IMAGES = 8  # images drawn when no dataset is available
CHUNK = 8  # images per inference call


@dataclass
class VerificationSet:
    """The images an export is verified on.

    Attributes:
        images: (H, W, 3) uint8 BGR images, any sizes.
        labels: their Labels (same order) when they come from a labelled val split, else None.
        source: where they came from, e.g. ``16 val images of data.yaml``.
    """

    images: list[np.ndarray]
    labels: list[Label] | None
    source: str

def synthetic_images(n: int = SYNTHETIC_IMAGES, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic (H, W, 3) uint8 BGR images of 320–480 x 240–400 pixels (``render_sample``)."""
    return [render_sample(sample_rng(seed, "val", i))[0] for i in range(n)]

def labelled_set(data_yaml: str | Path, n: int = MAX_IMAGES) -> VerificationSet:
    """The first ``n`` usable val images of a data YAML and their Labels (``split_labels``, as ``Runtime.val``).

    ``labels`` is None when none of them has an instance (no label files): no mAP to compare.

    Raises:
        EdgesegError: the YAML or its val split is unusable, or no val image is readable.
    """
    labels = split_labels(load_data_config(data_yaml), "val")[:n]
    pairs = [(image, label) for label in labels if (image := read_image(label.im_file)) is not None]
    if not pairs:
        raise EdgesegError(f"{data_yaml}: no readable val images to verify the export on")
    labelled = any(len(label.cls) for _, label in pairs)
    source = f"{len(pairs)} val images of {data_yaml}" + ("" if labelled else " (no labels)")
    return VerificationSet([image for image, _ in pairs], [label for _, label in pairs] if labelled else None, source)

def verification_set(data: str | Path | None, checkpoint: dict | None) -> VerificationSet:
    """The images (and labels, when there are) an export is verified on.

    ``data`` when given, else the data YAML named by the checkpoint's ``train_args`` when that
    file exists (a relative path is taken from the current folder, as training did), else
    ``synthetic_images()`` (unlabelled).
    """
    if data is None and checkpoint:
        trained_on = (checkpoint.get("train_args") or {}).get("data")
        if trained_on and Path(trained_on).is_file():
            data = trained_on
    if data is None:
        return VerificationSet(synthetic_images(), None, f"{SYNTHETIC_IMAGES} synthetic images")
    return labelled_set(data)

def infer_frames(runtime, frames: list, shape: tuple[int, int]) -> tuple[np.ndarray, list, tuple[np.ndarray, np.ndarray]]:
    """``frames`` through the batch loop's letterbox and ``runtime.backend.infer``, CHUNK images per call.

    Returns:
        (the (N, 3, H, W) input, the N LetterboxInfo, (preds (N, 4 + nc + nm, A), protos (N, nm, H / 4, W / 4))).
    """
    steps = list(infer_batches(runtime.backend.infer, frames, shape, CHUNK))
    inputs = np.concatenate([batch.tensor for batch, _, _ in steps])
    infos = [info for batch, _, _ in steps for info in batch.infos]
    outputs = tuple(np.concatenate([out[i] for _, out, _ in steps]) for i in range(2))
    return inputs, infos, outputs
