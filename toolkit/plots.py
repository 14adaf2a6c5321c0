"""The PNG files a training run writes: loss/metric curves, PR curves and image grids.

Never imports torch. matplotlib (the ``train`` extra) is imported inside the functions that
need it, so ``import edgeseg.plots`` stays light; figures are rendered through an explicit
Agg canvas (no pyplot, no global backend switch, no font downloads: matplotlib's bundled
DejaVu Sans). Image grids are drawn with OpenCV (Hershey fonts) through
:meth:`edgeseg.runtimes.pipeline.results.Results.plot`, so ground truth and predictions use the same
class colours (:func:`edgeseg.runtimes.pipeline.results.class_color`) as ``predict``.

Every function writes its file atomically (``edgeseg.runtimes.io.files.atomic_write``) and returns the path written.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import cv2
import numpy as np

from edgeseg.runtimes.io.files import atomic_write
from edgeseg.runtimes.pipeline.preprocess import fit_on_canvas
from edgeseg.runtimes.pipeline.results import Results

__all__ = ["plot_results", "plot_pr_curves", "plot_labelled_batch", "plot_val_predictions", "write_figure"]

_GRID_MAX_SIDE = 1920  # px: the batch grid is scaled down to fit this (Ultralytics' limit)
_CAPTION_HEIGHT = 24  # px: caption strip above the validation grid


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _write_image(path: str | Path, image: np.ndarray) -> Path:
    """Encode a BGR uint8 image as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    return atomic_write(path, lambda f: f.write(buf.tobytes()))


def write_figure(path: str | Path, fig, dpi: int) -> Path:
    """Render a matplotlib Figure with the Agg canvas to PNG and write it atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


# --------------------------------------------------------------------------------------
# results.csv
# --------------------------------------------------------------------------------------


def _gaussian_smooth(y: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Gaussian filter of ``y`` (1-D) with mirrored ends, like ``scipy.ndimage.gaussian_filter1d``."""
    radius = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return np.convolve(np.pad(y, radius, mode="symmetric"), k / k.sum(), mode="valid")


def _read_results_csv(csv_path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(epochs (R,), {column: (R,) float with NaN for empty cells})`` of the numeric columns.

    Column names are stripped (Ultralytics pads them with spaces). A column is numeric when
    every non-empty cell parses as a float and at least one cell is non-empty; ``epoch`` and
    ``time`` are left out of the dict.
    """
    with open(csv_path, newline="") as f:
        rows = [[cell.strip() for cell in row] for row in csv.reader(f) if row]
    if not rows:
        raise ValueError(f"{csv_path}: empty file")
    header, body = rows[0], rows[1:]
    if not body:
        raise ValueError(f"{csv_path}: no data rows")
    if "epoch" not in header:
        raise ValueError(f"{csv_path}: no 'epoch' column in header {header}")
    columns = {}
    for j, name in enumerate(header):
        cells = [row[j] if j < len(row) else "" for row in body]
        try:
            values = np.array([float(c) if c else np.nan for c in cells])
        except ValueError:
            continue  # text column
        if not np.isnan(values).all():
            columns[name] = values
    if "epoch" not in columns:
        raise ValueError(f"{csv_path}: the 'epoch' column is not numeric")
    epochs = columns.pop("epoch")
    columns.pop("time", None)
    return epochs, columns


def plot_results(csv_path: str | Path) -> Path:
    """Plot every numeric column of a training ``results.csv`` against the epoch.

    Args:
        csv_path: CSV with a header row including ``epoch`` (losses, metrics, learning rates,
            ...; ``time`` and non-numeric columns are skipped, empty cells leave gaps).

    Returns:
        ``results.png`` beside the CSV: one small subplot per column (5 per row), the
        values as a line with markers and, with more than 5 rows, a dotted Gaussian-smoothed
        line (sigma 3 epochs).

    Raises:
        ValueError: the file has no data row, no ``epoch`` column, or no numeric column to plot.
    """
    from matplotlib.figure import Figure

    csv_path = Path(csv_path)
    epochs, columns = _read_results_csv(csv_path)
    if not columns:
        raise ValueError(f"{csv_path}: no numeric column besides epoch/time")
    ncols = min(5, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(2.8 * ncols, 2.3 * nrows), layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, y) in zip(axes, columns.items()):
        ax.plot(epochs, y, marker=".", linewidth=2, markersize=6, label="results")
        finite = np.isfinite(y)
        if finite.sum() > 5:
            ax.plot(epochs[finite], _gaussian_smooth(y[finite]), ":", linewidth=2, label="smooth")
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in axes[len(columns) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    return write_figure(csv_path.with_name("results.png"), fig, dpi=150)


# --------------------------------------------------------------------------------------
# PR curves
# --------------------------------------------------------------------------------------


def _plot_pr(task, names: dict[int, str], title: str, path: Path) -> Path:
    """One PR-curve figure of a :class:`edgeseg.runtimes.evaluation.metrics.TaskMetrics` (IoU 0.5)."""
    from matplotlib.figure import Figure

    classes = [int(c) for c in task.ap_class_index]
    fig = Figure(figsize=(9, 6), layout="tight")
    ax = fig.subplots()
    for c in classes:
        label = f"{names.get(c, str(c))} {task.ap50[c]:.3f}" if len(classes) <= 20 else None
        ax.plot(task.px, task.prec[c], linewidth=1, label=label)
    mean = task.prec[classes].mean(0) if classes else np.zeros_like(task.px)
    ax.plot(task.px, mean, linewidth=3, color="blue", label=f"all classes mAP@0.5 = {task.map50:.3f}")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left", fontsize=8)
    return write_figure(path, fig, dpi=150)


def plot_pr_curves(metrics, names: dict[int, str], save_dir: str | Path) -> list[Path]:
    """Precision-recall curves at IoU 0.5 of a validation run.

    Args:
        metrics: :class:`edgeseg.runtimes.evaluation.metrics.SegmentMetrics`; per task the curves are
            ``prec (nc, 101)`` over the recall grid ``px (101,)``.
        names: class id -> name.
        save_dir: folder of the figures (created if missing).

    Returns:
        ``[save_dir/BoxPR_curve.png, save_dir/MaskPR_curve.png]``. Each has a thin line per
        class with GT (legend "name AP50" when there are at most 20 such classes) and a
        thick "all classes mAP@0.5 = x.xxx" line, the mean of those curves.
    """
    save_dir = Path(save_dir)
    return [
        _plot_pr(metrics.box, names, "Box Precision-Recall Curve", save_dir / "BoxPR_curve.png"),
        _plot_pr(metrics.seg, names, "Mask Precision-Recall Curve", save_dir / "MaskPR_curve.png"),
    ]


# --------------------------------------------------------------------------------------
# Image grids
# --------------------------------------------------------------------------------------


def _to_bgr_uint8(chw_rgb: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` RGB, uint8 or float in [0, 1] -> ``(H, W, 3)`` uint8 BGR."""
    img = np.asarray(chw_rgb)
    if img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img.transpose(1, 2, 0)[..., ::-1])


def _split_masks(masks: np.ndarray, batch_idx: np.ndarray, b: int) -> list[np.ndarray]:
    """Per image ``(n_i, h, w)`` bool instance masks from a collated batch's ``masks``.

    ``masks`` is either ``(B, h, w)`` index maps (value k is the k-th instance of that image,
    1-based, in batch order) or ``(N, h, w)`` binary masks. When ``B == N`` the shape cannot
    tell: values above 1 mean index maps; with values in {0, 1} they are read as binary
    masks, which is the same thing when every image has one instance.
    """
    n = len(batch_idx)
    index_maps = len(masks) == b and (len(masks) != n or masks.max(initial=0) > 1)
    out = []
    for i in range(b):
        sel = batch_idx == i
        if index_maps:
            out.append(masks[i][None] == np.arange(1, sel.sum() + 1)[:, None, None])
        else:
            out.append(masks[sel] > 0)
    return out


def _draw_file_name(tile: np.ndarray, name: str) -> None:
    """Write ``name`` in small white outlined text in the bottom-left corner of ``tile``."""
    org = (4, tile.shape[0] - 6)
    cv2.putText(tile, name, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, name, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def plot_labelled_batch(batch: dict, names: dict[int, str], path: str | Path, max_images: int = 16) -> Path:
    """Grid of a training batch's images with their ground truth drawn.

    Args:
        batch: a :func:`edgeseg.data.dataset.collate` batch (numpy): ``img`` (B, 3, S, S)
            uint8 RGB (float in [0, 1] is accepted too), ``cls`` (N, 1), ``bboxes`` (N, 4)
            normalised cx, cy, w, h, ``batch_idx`` (N,), ``masks`` (B, S/4, S/4) index maps or
            (N, S/4, S/4) binary masks; optional ``im_file`` (B paths) labels each tile.
        names: class id -> name.
        path: the PNG to write (e.g. ``train_batch0.png``).
        max_images: the first ``min(B, max_images)`` images are drawn.

    Returns:
        ``path``: a ``rows x cols`` grid with ``cols = ceil(sqrt(n))``, ``rows = ceil(n / cols)``
        of ``(S', S')`` tiles, ``S' = min(S, 1920 // cols)``, white where no image; in each tile
        the masks (upsampled to S x S by pixel replication) are blended at 50 % in the class
        colour, with the box and class name on top, and a 2 px white frame.
    """
    imgs = np.asarray(batch["img"])
    b, _, h, w = imgs.shape
    n = min(b, max_images)
    if n < 1:
        raise ValueError("plot_labelled_batch needs at least one image")
    cls = np.asarray(batch["cls"]).reshape(-1).astype(np.int64)
    boxes = np.asarray(batch["bboxes"], dtype=np.float32).reshape(-1, 4)
    batch_idx = np.asarray(batch["batch_idx"]).reshape(-1).astype(np.int64)
    masks = _split_masks(np.asarray(batch["masks"]), batch_idx, b)
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1) * [w, h, w, h]
    files = batch.get("im_file")

    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    scale = min(1.0, _GRID_MAX_SIDE / (cols * max(h, w)))
    th, tw = int(h * scale), int(w * scale)
    canvas = np.full((rows * th, cols * tw, 3), 255, np.uint8)
    for i in range(n):
        sel = batch_idx == i
        full = np.zeros((len(masks[i]), h, w), bool)
        for j, m in enumerate(masks[i]):
            full[j] = cv2.resize(m.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        drawn = Results(
            boxes=xyxy[sel],
            scores=np.ones(sel.sum()),
            classes=cls[sel],
            masks=full,
            names=names,
            orig_shape=(h, w),
            image=_to_bgr_uint8(imgs[i]),
        ).plot(conf=False)
        tile = cv2.resize(drawn, (tw, th), interpolation=cv2.INTER_AREA) if scale < 1 else drawn
        if files is not None:
            _draw_file_name(tile, Path(files[i]).name)
        cv2.rectangle(tile, (0, 0), (tw - 1, th - 1), (255, 255, 255), 2)
        r, c = divmod(i, cols)
        canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
    return _write_image(path, canvas)


def _draw_fitted(image, boxes, scores, classes, masks, names, th: int, tw: int, show_conf: bool) -> np.ndarray:
    """Detections drawn on ``image`` resized to fit ``(th, tw)`` (aspect kept), centred on grey padding.

    Drawing after the resize keeps line widths and label sizes the same on every tile.
    ``boxes`` (K, 4) xyxy px and ``masks`` (K, H, W) bool are in ``image``'s pixels.
    """
    h, w = image.shape[:2]
    out, r, (x, y) = fit_on_canvas(image, (th, tw))
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    masks = np.asarray(masks, bool).reshape(-1, h, w)
    small_masks = np.zeros((len(masks), nh, nw), bool)
    for j, m in enumerate(masks):
        small_masks[j] = cv2.resize(m.view(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32(r)
    small = out[y : y + nh, x : x + nw]
    out[y : y + nh, x : x + nw] = Results(boxes, scores, classes, small_masks, names, (nh, nw), image=small.copy()).plot(conf=show_conf)
    return out


def plot_val_predictions(
    images: list[np.ndarray],
    predictions: list[Results],
    ground_truths: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    names: dict[int, str],
    path: str | Path,
    max_images: int = 8,
    tile_height: int = 320,
    conf: float = 0.25,
) -> Path:
    """Grid of validation images: ground truth (left) next to predictions (right), one image per row.

    Args:
        images: ``(H, W, 3)`` uint8 BGR source images.
        predictions: one :class:`Results` per image, in that image's pixels (``orig_shape``
            must be ``(H, W)``).
        ground_truths: per image ``(boxes (M, 4) xyxy px, classes (M,), masks (M, H, W) bool)``.
        names: class id -> name (used on both sides).
        path: the PNG to write (e.g. ``val_batch0_pred.png``).
        max_images: the first ``min(len(images), max_images)`` images are drawn.
        tile_height: tile height in px.
        conf: predictions with a lower score are not drawn.

    Returns:
        ``path``: a ``_CAPTION_HEIGHT`` (24) px white strip captioned "labels" and
        "predictions" above ``n`` rows of two ``(tile_height, tile_width)`` tiles, where
        ``tile_width = round(tile_height * a)`` and ``a`` is the widest aspect ratio (w / h)
        among the images, clipped to [0.5, 2]; each image is fitted into its tile keeping its
        aspect ratio (grey padding) and drawn on at that size, so lines and labels look the
        same in every tile: labels with their class name, predictions with name and score
        (:meth:`Results.plot`).
    """
    n = min(len(images), max_images)
    if n < 1:
        raise ValueError("plot_val_predictions needs at least one image")
    if not len(images) == len(predictions) == len(ground_truths):
        raise ValueError(
            f"{len(images)} images, {len(predictions)} predictions and {len(ground_truths)} ground truths"
        )
    aspect = min(2.0, max(0.5, max(im.shape[1] / im.shape[0] for im in images[:n])))
    th, tw = tile_height, round(tile_height * aspect)
    canvas = np.full((_CAPTION_HEIGHT + n * th, 2 * tw, 3), 255, np.uint8)
    for x, caption in ((0, "labels"), (tw, "predictions")):
        (cw, _), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
        org = (x + (tw - cw) // 2, _CAPTION_HEIGHT - 7)
        cv2.putText(canvas, caption, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(n):
        image, pred = images[i], predictions[i]
        shape = image.shape[:2]
        if tuple(pred.orig_shape) != shape:
            raise ValueError(f"image {i} is {shape} but its prediction's orig_shape is {pred.orig_shape}")
        gt_boxes, gt_classes, gt_masks = ground_truths[i]
        gt_classes = np.asarray(gt_classes).reshape(-1)
        keep = pred.scores >= conf
        tiles = (
            _draw_fitted(image, gt_boxes, np.ones(len(gt_classes)), gt_classes, gt_masks, names, th, tw, False),
            _draw_fitted(
                image, pred.boxes[keep], pred.scores[keep], pred.classes[keep], pred.masks[keep], names, th, tw, True
            ),
        )
        y = _CAPTION_HEIGHT + i * th
        for x, tile in zip((0, tw), tiles):
            cv2.rectangle(tile, (0, 0), (tw - 1, th - 1), (255, 255, 255), 2)
            canvas[y : y + th, x : x + tw] = tile
    return _write_image(path, canvas)
