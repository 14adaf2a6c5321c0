"""``edgeseg data check``: what a YOLO-seg dataset holds, and what is wrong with it (numpy + OpenCV, no torch)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from edgeseg.plots import plot_labelled_batch
from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.io.data_config import img_paths, load_data_config
from edgeseg.runtimes.io.images import read_image
from edgeseg.runtimes.pipeline.preprocess import fit_on_canvas

SIZE_BIN = 64  # px: image sizes are counted in bins this wide, per side
SAMPLE_SIZE = 480  # px: side of each letterboxed sample tile


def _size_bin(shape: tuple[int, int]) -> str:
    """``"640-703x448-511"``: the SIZE_BIN-wide width x height bin of an (h, w) shape, in px."""
    h, w = shape
    w0, h0 = w // SIZE_BIN * SIZE_BIN, h // SIZE_BIN * SIZE_BIN
    return f"{w0}-{w0 + SIZE_BIN - 1}x{h0}-{h0 + SIZE_BIN - 1}"


def _sample_batch(labels: list[Label], size: int) -> dict | None:
    """A :func:`edgeseg.plots.plot_labelled_batch` batch of the labelled images, each letterboxed to (size, size).

    Each image is scaled so its longer side is ``size`` and placed top-left on grey; its
    polygons are filled into full-size binary masks, (N, size, size). An image that can no
    longer be read (changed since the scan) is left out; None when none can.
    """
    pairs = [(label, img) for label in labels if (img := read_image(label.im_file)) is not None]
    if not pairs:
        return None
    imgs, cls, boxes, batch_idx, masks = [], [], [], [], []
    for i, (label, img) in enumerate(pairs):
        h, w = img.shape[:2]
        canvas, r, _ = fit_on_canvas(img, (size, size), centre=False)
        nh, nw = max(1, round(h * r)), max(1, round(w * r))
        imgs.append(canvas[..., ::-1].transpose(2, 0, 1))
        for c, segment in zip(label.cls, label.segments):
            points = segment * np.array([nw, nh], np.float32)
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
            lo, hi = points.min(0), points.max(0)
            masks.append(mask)
            boxes.append(np.concatenate([(lo + hi) / 2, hi - lo]) / size)
            cls.append(int(c))
            batch_idx.append(i)
    return {
        "img": np.stack(imgs),
        "cls": np.array(cls, np.int64).reshape(-1, 1),
        "bboxes": np.array(boxes, np.float32).reshape(-1, 4),
        "batch_idx": np.array(batch_idx, np.int64),
        "masks": np.stack(masks) if masks else np.zeros((0, size, size), np.uint8),
        "im_file": [label.im_file for label, _ in pairs],
    }


def check_dataset(data_yaml: str | os.PathLike, out_png: str | os.PathLike | None = None, max_images: int = 16) -> dict:
    """Scan every split of a data YAML and summarise it.

    Args:
        data_yaml: the dataset's data YAML (``path``, ``train``, ``val``, optional ``test``, ``names``).
        out_png: where to write a grid of labelled samples (masks, boxes and class names drawn
            over the images); None writes nothing.
        max_images: samples in the grid, spread evenly over all splits' usable images.

    Returns:
        ``{"yaml", "names" {id: name}, "splits", "png"}``; ``splits`` maps each split present
        to ``{"images", "found", "missing", "empty", "corrupt", "duplicates"`` (the label scan's
        counts, see :class:`edgeseg.runtimes.evaluation.labels.ScanStats`), ``"instances"`` (objects in the usable
        images), ``"classes"`` ({class id: instances}, every class, zeros included), ``"sizes"``
        ({``"W0-W1xH0-H1"`` px bin, SIZE_BIN wide per side: images}, most frequent first) and
        ``"problems"`` (one line per excluded file)}; ``png`` is the grid's path or None.

    Raises:
        EdgesegError: the YAML or a split path is missing or invalid, or a split has no images.
    """
    cfg = load_data_config(data_yaml)
    names, nc = cfg["names"], cfg["nc"]
    splits, usable = {}, []
    for split in ("train", "val", "test"):
        if cfg.get(split) is None:
            continue
        labels, stats = scan_labels(img_paths(cfg[split], cfg["path"]), nc, prefix=split)
        classes = np.bincount(np.concatenate([lb.cls for lb in labels] + [np.zeros(0, np.int64)]), minlength=nc)
        sizes = Counter(_size_bin(lb.shape) for lb in labels)
        splits[split] = {
            "images": stats.images,
            "found": stats.found,
            "missing": stats.missing,
            "empty": stats.empty,
            "corrupt": stats.corrupt,
            "duplicates": stats.duplicates,
            "instances": int(classes.sum()),
            "classes": {c: int(classes[c]) for c in range(nc)},
            "sizes": dict(sizes.most_common()),
            "problems": list(stats.messages),
        }
        usable.extend(labels)
    png = None
    if out_png is not None and usable:
        picks = np.unique(np.linspace(0, len(usable) - 1, min(max_images, len(usable))).round().astype(int))
        batch = _sample_batch([usable[i] for i in picks], SAMPLE_SIZE)
        png = str(plot_labelled_batch(batch, names, Path(out_png))) if batch is not None else None
    return {"yaml": cfg["yaml_file"], "names": names, "splits": splits, "png": png}


def format_report(report: dict, top_sizes: int = 5) -> str:
    """The :func:`check_dataset` result as readable lines (what ``edgeseg data check`` prints)."""
    names = report["names"]
    lines = [f"{report['yaml']}: {len(names)} classes"]
    for split, s in report["splits"].items():
        lines.append(
            f"{split}: {s['images']} images, {s['found']} with labels, {s['missing']} without a label file, "
            f"{s['empty']} with an empty one, {s['corrupt']} corrupt, {s['duplicates']} duplicate lines; "
            f"{s['instances']} instances"
        )
        lines.append("  classes: " + ", ".join(f"{names[c]} {n}" for c, n in s["classes"].items()))
        sizes = list(s["sizes"].items())
        more = f", ... ({len(sizes) - top_sizes} more bins)" if len(sizes) > top_sizes else ""
        lines.append("  sizes (WxH px): " + ", ".join(f"{k}: {n}" for k, n in sizes[:top_sizes]) + more)
        lines.extend(f"  problem: {p}" for p in s["problems"])
    if report["png"]:
        lines.append(f"labelled samples: {report['png']}")
    return "\n".join(lines)
