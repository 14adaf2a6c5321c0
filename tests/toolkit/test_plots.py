"""edgeseg.plots: the PNGs a training run writes (layout and input-dependent content)."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from edgeseg.plots import plot_labelled_batch, plot_pr_curves, plot_results, plot_val_predictions  # noqa: E402
from edgeseg.runtimes.evaluation.metrics import SegmentEvaluator  # noqa: E402
from edgeseg.runtimes.pipeline.results import Results, class_color  # noqa: E402

NAMES = {0: "cat", 1: "dog", 2: "bird"}
COLUMNS = [
    "epoch", "time", "train/box_loss", "train/seg_loss", "train/cls_loss", "train/dfl_loss",
    "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
    "metrics/precision(M)", "metrics/recall(M)", "metrics/mAP50(M)", "metrics/mAP50-95(M)",
    "val/box_loss", "val/seg_loss", "val/cls_loss", "val/dfl_loss", "lr/pg0", "lr/pg1", "lr/pg2",
]  # fmt: skip


def _read(path):
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable image"
    return img


def _tint(base, cls, alpha=0.5):
    """BGR of a ``base`` grey pixel blended with the class colour as Results.plot does."""
    return np.round(base * (1 - alpha) + np.array(class_color(cls), np.float32) * alpha)


def _no_temp_files(folder):
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------
# results.csv
# --------------------------------------------------------------------------------------


def _write_csv(path, rows, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = [",".join(f"{c:>20s}" for c in COLUMNS)]  # Ultralytics pads the header
    for e in range(1, rows + 1):
        values = [str(e), f"{e * 3.5:.1f}"] + [f"{v:.5f}" for v in rng.random(len(COLUMNS) - 2) / e]
        lines.append(",".join(values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plot_results_writes_grid_beside_csv(tmp_path):
    out = plot_results(_write_csv(tmp_path / "results.csv", 12))
    assert out == tmp_path / "results.png"
    # 19 numeric columns (epoch, time left out) -> 4 rows x 5 columns of 2.8 x 2.3 in at 150 dpi
    assert _read(out).shape == (round(4 * 2.3 * 150), round(5 * 2.8 * 150), 3)
    _no_temp_files(tmp_path)


def test_plot_results_depends_on_values(tmp_path):
    a = _read(plot_results(_write_csv(tmp_path / "a" / "results.csv", 10, seed=0)))
    b = _read(plot_results(_write_csv(tmp_path / "b" / "results.csv", 10, seed=1)))
    assert a.shape == b.shape and (a != b).any()


def test_plot_results_single_row_and_odd_columns(tmp_path):
    # one epoch, a text column and an all-empty column (both skipped): still a readable plot
    csv = tmp_path / "results.csv"
    csv.write_text("epoch,note,train/box_loss,metrics/mAP50(B),val/box_loss\n1,first,1.25,0.5,\n")
    img = _read(plot_results(csv))
    assert img.shape == (round(2.3 * 150), round(2 * 2.8 * 150), 3)  # 2 numeric columns, 1 row


def test_plot_results_gaps(tmp_path):
    # val losses only every other epoch: empty cells leave gaps, the smoothed line uses the rest
    rows = [f"{e},{1 / e:.4f},{'' if e % 2 else f'{2 / e:.4f}'}" for e in range(1, 16)]
    csv = tmp_path / "results.csv"
    csv.write_text("epoch,train/box_loss,val/box_loss\n" + "\n".join(rows) + "\n")
    assert _read(plot_results(csv)).shape == (round(2.3 * 150), round(2 * 2.8 * 150), 3)


@pytest.mark.parametrize(
    "text",
    ["epoch,train/box_loss\n", "", "train/box_loss,lr/pg0\n0.5,0.01\n", "epoch,time\n1,2\n"],
    ids=["header-only", "empty", "no-epoch", "nothing-to-plot"],
)
def test_plot_results_rejects_unusable_csv(tmp_path, text):
    csv = tmp_path / "results.csv"
    csv.write_text(text)
    with pytest.raises(ValueError):
        plot_results(csv)
    assert not (tmp_path / "results.png").exists()


# --------------------------------------------------------------------------------------
# PR curves
# --------------------------------------------------------------------------------------


def _rect_mask(shape, box):
    m = np.zeros(shape, bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def _metrics(perfect: bool, nc=3, seed=0):
    """SegmentMetrics of 4 fake 64x64 images with 3 GTs each.

    Perfect: the GTs themselves. Otherwise two of the GTs shifted by 0-4 px plus four random
    boxes of random classes, all with random scores.
    """
    rng = np.random.default_rng(seed)
    ev = SegmentEvaluator(nc)
    for _ in range(4):
        gb = np.array([[4, 4, 30, 30], [34, 4, 60, 30], [10, 34, 54, 60]])
        gc = rng.integers(0, nc, 3)
        gm = np.stack([_rect_mask((64, 64), b) for b in gb])
        if perfect:
            pb, pc, pm = gb, gc, gm
        else:
            xy = rng.integers(0, 40, (4, 2))
            pb = np.concatenate([gb[:2] + rng.integers(0, 5, (2, 1)), np.concatenate([xy, xy + 16], 1)])
            pc = np.concatenate([gc[:2], rng.integers(0, nc, 4)])
            pm = np.stack([_rect_mask((64, 64), b) for b in pb])
        ev.update(pb, rng.random(len(pb)), pc, pm, gb, gc, gm)
    return ev.result()


def _blue_rows(img):
    """Mean row of the thick mean curve's pure-blue pixels (BGR (255, 0, 0))."""
    ys, _ = np.nonzero((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60))
    return ys.mean()


def test_plot_pr_curves_files_and_content(tmp_path):
    perfect, noisy = _metrics(True), _metrics(False)
    assert perfect.box.map50 == pytest.approx(1.0) and 0.2 < noisy.box.map50 < 0.8
    good = plot_pr_curves(perfect, NAMES, tmp_path / "good")
    bad = plot_pr_curves(noisy, NAMES, tmp_path / "bad")
    assert [p.name for p in good] == ["BoxPR_curve.png", "MaskPR_curve.png"]
    assert all(p.parent == tmp_path / "good" for p in good)
    for g, b in zip(good, bad):
        gi, bi = _read(g), _read(b)
        assert gi.shape == bi.shape == (6 * 150, 9 * 150, 3)
        assert (gi != bi).any()
        # precision 1 at every recall puts the mean curve higher up the image
        assert _blue_rows(gi) < _blue_rows(bi)
    _no_temp_files(tmp_path / "good")


def test_plot_pr_curves_many_classes_and_no_gt(tmp_path):
    names = {i: f"class{i}" for i in range(25)}
    many = plot_pr_curves(_metrics(False, nc=25), names, tmp_path / "many")  # > 20 classes: no per-class legend
    empty = SegmentEvaluator(3)
    empty.update(np.zeros((0, 4)), [], [], np.zeros((0, 8, 8), bool), np.zeros((0, 4)), [], np.zeros((0, 8, 8), bool))
    none = plot_pr_curves(empty.result(), NAMES, tmp_path / "none")
    for p in many + none:
        assert _read(p).shape == (900, 1350, 3)


# --------------------------------------------------------------------------------------
# Training batch grid
# --------------------------------------------------------------------------------------

S = 128


def _batch(b=5, overlap=True, s=S):
    """Grey (100) images; image i has i % 3 + 1 instances: square k at column 8 + 40 k, class (i + k) % 3."""
    img = np.full((b, 3, s, s), 100, np.uint8)
    cls, bboxes, batch_idx, maps, binary = [], [], [], np.zeros((b, s // 4, s // 4), np.uint8), []
    for i in range(b):
        for k in range(i % 3 + 1):
            x1, y1, side = 8 + 40 * k, 40, 32
            cls.append([(i + k) % 3])
            bboxes.append([(x1 + side / 2) / s, (y1 + side / 2) / s, side / s, side / s])
            batch_idx.append(i)
            m = np.zeros((s // 4, s // 4), np.uint8)
            m[y1 // 4 : (y1 + side) // 4, x1 // 4 : (x1 + side) // 4] = 1
            maps[i][m > 0] = k + 1
            binary.append(m)
    return {
        "img": img,
        "cls": np.array(cls, np.float32),
        "bboxes": np.array(bboxes, np.float32),
        "batch_idx": np.array(batch_idx, np.float32),
        "masks": maps if overlap else np.stack(binary),
        "im_file": [f"/data/images/img{i}.jpg" for i in range(b)],
    }


def test_plot_labelled_batch_layout_and_mask_tint(tmp_path):
    batch = _batch(5)
    out = plot_labelled_batch(batch, NAMES, tmp_path / "train_batch0.png")
    assert out == tmp_path / "train_batch0.png"
    img = _read(out)
    assert img.shape == (2 * S, 3 * S, 3)  # 5 images -> 3 columns x 2 rows of S x S tiles
    assert (img[S + 10 : 2 * S - 10, 2 * S + 10 : 3 * S - 10] == 255).all()  # empty slot stays white
    for i in range(5):
        r, c = divmod(i, 3)
        for k in range(3):
            y, x = r * S + 40 + 24, c * S + 8 + 40 * k + 16  # lower part of square k (below its label)
            if k <= i % 3:
                np.testing.assert_array_equal(img[y, x], _tint(100, (i + k) % 3))
            else:
                np.testing.assert_array_equal(img[y, x], [100, 100, 100])
    _no_temp_files(tmp_path)


def test_plot_labelled_batch_binary_masks_match_index_maps(tmp_path):
    a = _read(plot_labelled_batch(_batch(5, overlap=True), NAMES, tmp_path / "a.png"))
    b = _read(plot_labelled_batch(_batch(5, overlap=False), NAMES, tmp_path / "b.png"))
    np.testing.assert_array_equal(a, b)


def test_plot_labelled_batch_max_images_and_downscale(tmp_path):
    img = _read(plot_labelled_batch(_batch(20), NAMES, tmp_path / "a.png"))
    assert img.shape == (4 * S, 4 * S, 3)  # 16 of 20 images: 4 x 4
    img = _read(plot_labelled_batch(_batch(3, s=1024), NAMES, tmp_path / "b.png", max_images=2))
    assert img.shape == (960, 2 * 960, 3)  # 2 x 1024 > 1920 px: tiles scaled to 960


# --------------------------------------------------------------------------------------
# Validation grid
# --------------------------------------------------------------------------------------


def _val_inputs():
    """Three grey images (200x100, 150x150, 80x120 w x h), one GT and two predictions each."""
    images, preds, gts = [], [], []
    for i, (w, h) in enumerate([(200, 100), (150, 150), (120, 80)]):
        image = np.full((h, w, 3), 100, np.uint8)
        gt_box = np.array([[w * 0.1, h * 0.3, w * 0.45, h * 0.9]])
        gt_mask = _rect_mask((h, w), gt_box[0].astype(int))[None]
        gts.append((gt_box, np.array([i]), gt_mask))
        pb = np.array([[w * 0.55, h * 0.3, w * 0.9, h * 0.9], [w * 0.1, h * 0.3, w * 0.45, h * 0.9]])
        pm = np.stack([_rect_mask((h, w), b.astype(int)) for b in pb])
        # the confident prediction (class i + 1) is on the right half; the other (score 0.1) mirrors the GT
        preds.append(Results(pb, [0.9, 0.1], [(i + 1) % 3, i], pm, NAMES, (h, w)))
        images.append(image)
    return images, preds, gts


def test_plot_val_predictions_layout_and_content(tmp_path):
    images, preds, gts = _val_inputs()
    out = plot_val_predictions(images, preds, gts, NAMES, tmp_path / "val_batch0_pred.png")
    img = _read(out)
    th, tw, cap = 320, 640, 24  # widest aspect 2 -> 640 px wide tiles
    assert img.shape == (cap + 3 * th, 2 * tw, 3)
    assert (img[:cap].min(axis=(0, 1)) < 100).all()  # caption text in the white strip
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        r = min(th / h, tw / w)
        oy, ox = cap + i * th + (th - round(h * r)) // 2, (tw - round(w * r)) // 2

        def at(fx, fy, right):
            return img[oy + int(fy * h * r), ox + int(fx * w * r) + (tw if right else 0)].astype(int)

        np.testing.assert_allclose(at(0.3, 0.75, False), _tint(100, i), atol=2)  # GT mask, left
        np.testing.assert_allclose(at(0.7, 0.75, False), [100, 100, 100], atol=2)  # no GT there
        np.testing.assert_allclose(at(0.7, 0.75, True), _tint(100, (i + 1) % 3), atol=2)  # prediction
        np.testing.assert_allclose(at(0.3, 0.75, True), [100, 100, 100], atol=2)  # below conf: not drawn
    _no_temp_files(tmp_path)


def test_plot_val_predictions_max_images_and_errors(tmp_path):
    images, preds, gts = _val_inputs()
    img = _read(plot_val_predictions(images, preds, gts, NAMES, tmp_path / "a.png", max_images=1, tile_height=100))
    assert img.shape == (24 + 100, 2 * 200, 3)
    with pytest.raises(ValueError):
        plot_val_predictions(images, preds[:2], gts, NAMES, tmp_path / "b.png")
    with pytest.raises(ValueError):
        plot_val_predictions(images[::-1], preds, gts, NAMES, tmp_path / "c.png")  # shapes disagree
    with pytest.raises(ValueError):
        plot_val_predictions([], [], [], NAMES, tmp_path / "d.png")


def test_import_is_light():
    code = "import sys, edgeseg.plots; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
