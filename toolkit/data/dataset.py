"""The YOLO-seg training/validation Dataset: indexable, numpy-only (the trainer wraps arrays into tensors).

Randomness: sample ``i`` of epoch ``e`` draws everything from
``np.random.default_rng([seed, e, i])``, so a sample does not depend on DataLoader worker count
or order. ``set_epoch`` and ``close_mosaic`` change the dataset object; with DataLoader workers
they reach the workers only when the workers are (re)started after the call
(``persistent_workers=False``, or a new iterator).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from edgeseg.data.augment import (
    DEFAULT_HYP,
    MASK_RATIO,
    augment_hsv,
    flip,
    mosaic4,
    polygons_to_masks,
    random_affine,
    resample_polygon,
)
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.io.data_config import img_paths
from edgeseg.runtimes.io.images import read_image
from edgeseg.runtimes.pipeline.preprocess import letterbox

LOGGER = logging.getLogger("edgeseg")


class SegmentationDataset:
    """Images and instance polygons of one split, augmented for training or letterboxed for val.

    Args:
        source: a data config from ``load_data_config`` (with ``split``), or a list of image paths
            (with ``nc``).
        imgsz: output size S; images come out S x S, masks S/4 x S/4.
        augment: training pipeline (mosaic, affine, HSV, flips) if True; else the runtime's
            letterbox only.
        hyp: overrides of :data:`edgeseg.data.augment.DEFAULT_HYP` (other keys are ignored).
        overlap_mask: one index map per image instead of one binary mask per instance.
        seed: base seed of every sample's generator.
        cache_images: decode every image once, up front, and keep it in memory (train: resized
            so its long side is S; val: the original).
        split: which split of a data config, and the prefix of log lines.
        nc: number of classes, when ``source`` is a list of paths.

    Raises:
        EdgesegError: no usable image in the split.
    """

    def __init__(
        self,
        source: dict | list[str],
        imgsz: int = 640,
        augment: bool = True,
        hyp: dict | None = None,
        overlap_mask: bool = True,
        seed: int = 0,
        cache_images: bool = False,
        *,
        split: str = "train",
        nc: int | None = None,
    ):
        if isinstance(source, dict):
            if source.get(split) is None:
                raise EdgesegError(f"{source.get('yaml_file', 'data config')}: no '{split}' split")
            files, nc = img_paths(source[split], source["path"]), source["nc"]
        elif nc is None:
            raise ValueError("SegmentationDataset: pass nc with a list of image paths")
        else:
            files = [str(f) for f in source]
        self.labels: list[Label]
        self.labels, self.stats = scan_labels(files, nc, prefix=split)
        if not self.labels:
            raise EdgesegError(f"{split}: none of the {len(files)} images is usable (see the warnings above)")
        if self.stats.found == 0:
            LOGGER.warning(f"{split}: no labels found; training on these images teaches only background")
        self.imgsz = imgsz
        self.augment = augment
        self.hyp = {**DEFAULT_HYP, **{k: float(v) for k, v in (hyp or {}).items() if k in DEFAULT_HYP}}
        self.overlap_mask = overlap_mask
        self.seed = seed
        self.epoch = 0
        self.mosaic = augment and self.hyp["mosaic"] > 0
        self._images: list[np.ndarray] | None = None
        if cache_images:
            with ThreadPoolExecutor(max_workers=min(8, usable_cpus())) as pool:
                self._images = list(pool.map(self._read, range(len(self.labels))))

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the following samples use."""
        self.epoch = int(epoch)

    def close_mosaic(self) -> None:
        """Stop mosaic for the rest of training: letterbox + affine (scale still applied), HSV, flips."""
        self.mosaic = False

    def _read(self, i: int) -> np.ndarray:
        """Image i as BGR uint8: resized to long side S with INTER_LINEAR when augmenting, else original."""
        img = read_image(self.labels[i].im_file)
        if img is None:
            raise EdgesegError(f"{self.labels[i].im_file}: image can no longer be read")
        if self.augment:
            h0, w0 = img.shape[:2]
            r = self.imgsz / max(h0, w0)
            if r != 1:
                size = (min(math.ceil(w0 * r), self.imgsz), min(math.ceil(h0 * r), self.imgsz))
                img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
        return img

    def _load(self, i: int) -> np.ndarray:
        """Image i, from the in-memory cache when there is one (returned arrays are never modified in place)."""
        return self._images[i] if self._images is not None else self._read(i)

    def _train_tile(self, i: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Image i resized to long side S, its polygons in its pixels resampled densely, and cls (n,)."""
        img = self._load(i)
        wh = np.array([img.shape[1], img.shape[0]], np.float32)
        label = self.labels[i]
        return img, [resample_polygon(seg * wh) for seg in label.segments], label.cls

    def __getitem__(self, index: int) -> dict:
        """One sample.

        Returns:
            ``img`` (3, S, S) uint8 RGB; ``cls`` (n, 1) float32; ``bboxes`` (n, 4) float32
            normalised cx, cy, w, h in the S x S image; ``masks`` (S/4, S/4) index map (value k
            is instance k - 1; instances sorted by area, largest first) with ``overlap_mask``,
            else (n, S/4, S/4) uint8; ``segments`` n (k, 2) float32 polygons normalised to the
            S x S image; ``im_file``; ``ori_shape`` (h, w). In val mode also ``ratio_pad``
            (ratio, (pad_x, pad_y)) mapping original pixels to input pixels, and
            ``orig_segments`` n (k, 2) float32 polygons in original image pixels.
        """
        if index < 0:
            index += len(self)
        label = self.labels[index]
        s = self.imgsz
        if not self.augment:
            img0 = self._load(index)
            img, info = letterbox(img0, (s, s), scaleup=True)
            wh0 = np.array([img0.shape[1], img0.shape[0]], np.float32)
            orig = [seg * wh0 for seg in label.segments]
            pad = np.array([info.pad_x, info.pad_y], np.float32)
            segments = [seg * info.ratio + pad for seg in orig]
            boxes = np.array([np.concatenate([p.min(0), p.max(0)]) for p in segments], np.float32).reshape(-1, 4)
            sample, order = self._format(img, segments, label.cls, boxes, label)
            sample["ratio_pad"] = (info.ratio, (info.pad_x, info.pad_y))
            sample["orig_segments"] = [orig[k] for k in order]
            return sample

        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.mosaic and rng.random() < self.hyp["mosaic"]:
            tiles = [self._train_tile(j) for j in [index, *rng.integers(0, len(self), 3)]]
            img, segments, cls = mosaic4(tiles, s, rng)
            border = -(s // 2)
        else:
            img, segments, cls = self._train_tile(index)
            img, info = letterbox(img, (s, s), scaleup=True)
            pad = np.array([info.pad_x, info.pad_y], np.float32)
            segments = [seg * info.ratio + pad for seg in segments]
            border = 0
        img, segments, cls, boxes = random_affine(img, segments, cls, rng, self.hyp, border)
        augment_hsv(img, rng, self.hyp["hsv_h"], self.hyp["hsv_s"], self.hyp["hsv_v"])
        if rng.random() < self.hyp["flipud"]:
            img, segments, boxes = flip(img, segments, boxes, horizontal=False)
        if rng.random() < self.hyp["fliplr"]:
            img, segments, boxes = flip(img, segments, boxes, horizontal=True)
        return self._format(img, segments, cls, boxes, label)[0]

    def _format(
        self, img: np.ndarray, segments: list[np.ndarray], cls: np.ndarray, boxes: np.ndarray, label: Label
    ) -> tuple[dict, np.ndarray]:
        """The sample dict of a final S x S BGR image with polygons/boxes in its pixels, and the instance order used."""
        h, w = img.shape[:2]
        masks, order = polygons_to_masks(segments, (h, w), self.overlap_mask, MASK_RATIO)
        boxes = boxes[order]
        scale = np.array([w, h], np.float32)
        xywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1) / np.tile(scale, 2)
        sample = {
            "img": np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)),
            "cls": np.asarray(cls, np.float32)[order].reshape(-1, 1),
            "bboxes": xywh.astype(np.float32).reshape(-1, 4),
            "masks": masks,
            "segments": [(segments[k] / scale).astype(np.float32) for k in order],
            "im_file": label.im_file,
            "ori_shape": label.shape,
        }
        return sample, order


def collate(samples: list[dict]) -> dict:
    """Batch samples from :class:`SegmentationDataset`.

    Returns:
        ``img`` (B, 3, S, S) uint8; ``cls`` (N, 1) and ``bboxes`` (N, 4) float32 over all N
        instances; ``batch_idx`` (N,) float32 sample index of each instance; ``masks``
        (B, S/4, S/4) index maps (overlap) or (N, S/4, S/4); every other key as a list of B values.
    """
    out = {
        "img": np.stack([s["img"] for s in samples]),
        "cls": np.concatenate([s["cls"] for s in samples]),
        "bboxes": np.concatenate([s["bboxes"] for s in samples]),
        "batch_idx": np.concatenate([np.full(len(s["cls"]), i, np.float32) for i, s in enumerate(samples)]),
    }
    masks = [s["masks"] for s in samples]
    out["masks"] = np.stack(masks) if masks[0].ndim == 2 else np.concatenate(masks)
    for key in samples[0]:
        if key not in out:
            out[key] = [s[key] for s in samples]
    return out
