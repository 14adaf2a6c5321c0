"""Box and mask mAP for instance segmentation, following COCO's definition (numpy only).

This module never imports torch: the torch-free runtime reuses it to validate exported
models on devices. It reproduces ``pycocotools.cocoeval.COCOeval`` (``iouType`` "bbox" and
"segm", area range "all", ``maxDets=100``, no crowd GTs):

* IoU thresholds 0.50:0.05:0.95 (10) and recall thresholds 0:0.01:1 (101), built with the
  same ``np.linspace`` calls as COCOeval so threshold comparisons agree bit for bit.
* Evaluation is per (image, class): detections of class ``c`` only match GTs of class
  ``c``. In each (image, class) the detections are sorted by score (stable mergesort, so
  ties keep input order) and only the top ``max_det`` are kept -- this is where COCOeval
  applies ``maxDets`` (per image *and* class). A detector-wide cap across classes (NMS
  ``max_det``) is the caller's business, applied before these metrics.
* Greedy matching in descending score order: each detection takes the unmatched GT with
  the highest IoU that is ``>= threshold`` (IoU ties go to the later GT, as in COCOeval).
* Per class, detections of all images are concatenated in the order images were added and
  stably sorted by score; precision ``tp / (tp + fp + eps)`` is made monotone (the
  envelope) and sampled at the 101 recall thresholds (``searchsorted(side="left")``;
  recall thresholds beyond the reached recall get precision 0).
* A class without GT is left out of the means (COCOeval's -1).

Box IoU is COCO's: areas ``w * h`` with no +1. Mask IoU uses exact pixel counts at the
original image resolution.

On top of COCO's numbers, precision P and recall R per class at IoU 0.5 are reported the
way Ultralytics does: P(conf) and R(conf) curves on a 1000-point confidence grid, one
confidence chosen to maximise the (smoothed) F1 averaged over classes, P and R read there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "box_iou",
    "mask_iou",
    "MatchAccumulator",
    "TaskMetrics",
    "SegmentMetrics",
    "SegmentEvaluator",
]

# Exactly COCOeval's Params.setDetParams values.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
_MATCH_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # COCOeval: iou = min(t, 1 - 1e-10)


# --------------------------------------------------------------------------------------
# IoU
# --------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between two sets of boxes, as COCO computes it.

    Args:
        a: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels.
        b: ``(M, 4)`` boxes ``x1, y1, x2, y2`` in pixels.

    Returns:
        ``(N, M)`` float64 IoU. Areas are ``(x2 - x1) * (y2 - y1)`` (no +1); pairs with a
        zero union get 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (area_a[:, None] + area_b[None, :]) - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=(union > 0) & (inter > 0))
    return out


def mask_extents(m: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` bool -> ``(K, 4)`` int ``y1, y2, x1, x2`` (end exclusive) of each mask's True pixels; empty -> zeros."""
    h, w = m.shape[1:]
    rows = m.any(axis=2)
    cols = m.any(axis=1)
    ext = np.stack(
        [rows.argmax(1), h - rows[:, ::-1].argmax(1), cols.argmax(1), w - cols[:, ::-1].argmax(1)], axis=1
    )
    ext[~rows.any(axis=1)] = 0
    return ext


def mask_iou(a, b: np.ndarray, windows_a: np.ndarray | None = None) -> np.ndarray:
    """IoU between two sets of binary masks of the same size.

    Args:
        a: ``(N, H, W)`` bool (or 0/1) masks; with ``windows_a``, N crops instead: mask i is
            False outside its window and ``a[i]`` is its ``(y1 - y0, x1 - x0)`` part inside it.
        b: ``(M, H, W)`` bool (or 0/1) masks, same ``H, W`` as ``a``.
        windows_a: optional ``(N, 4)`` int ``y0, y1, x0, x1`` windows within ``(H, W)`` (a
            predicted mask's box window, ``postprocess.pixel_windows``). Without it, each full
            mask's extent is found by a scan.

    Returns:
        ``(N, M)`` float64 IoU from exact integer pixel counts; pairs with a zero union get
        0 (as COCO does for empty masks).

    For each mask of ``a`` the intersections with all masks of ``b`` whose bounding box
    overlaps its window are counted at once (vectorised over ``b``), inside the part of the
    window those boxes cover.
    Work is proportional to ``M x`` the window area of each mask of ``a``: ~7 ms for 30 x 30
    80-px masks of 640x480 (a dense float32 matrix product over ``H*W`` takes ~25 ms and,
    being multithreaded BLAS, stalls for seconds when the CPU is oversubscribed).
    """
    b = np.asarray(b)
    if windows_a is None:
        a = np.asarray(a)
        if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
            raise ValueError(f"mask_iou needs (N,H,W) and (M,H,W) masks of one size, got {a.shape} and {b.shape}")
        ea = mask_extents(a.astype(bool, copy=False))
        crops = [mask[y1:y2, x1:x2] for mask, (y1, y2, x1, x2) in zip(a, ea.tolist())]
    else:
        ea = np.asarray(windows_a, dtype=np.int64).reshape(len(a), 4)
        crops = list(a)
        h, w = b.shape[1:] if b.ndim == 3 else (0, 0)
        fits = all(
            np.shape(crop) == (y2 - y1, x2 - x1) and 0 <= y1 <= y2 <= h and 0 <= x1 <= x2 <= w
            for crop, (y1, y2, x1, x2) in zip(crops, ea.tolist())
        )
        if b.ndim != 3 or not fits:
            raise ValueError(f"mask_iou needs (M,H,W) masks and crops that fit their windows inside (H, W), got {b.shape}")
    n, m = len(crops), b.shape[0]
    out = np.zeros((n, m), dtype=np.float64)
    if n == 0 or m == 0:
        return out
    b = b.astype(bool, copy=False)
    crops = [np.asarray(crop, dtype=bool) for crop in crops]
    area_a = np.array([np.count_nonzero(crop) for crop in crops], dtype=np.float64)
    area_b = np.count_nonzero(b.reshape(m, -1), axis=1).astype(np.float64)
    eb = mask_extents(b)
    b_has = area_b > 0
    inter = np.zeros((n, m), dtype=np.float64)
    for i in np.flatnonzero(area_a > 0):
        y1, y2, x1, x2 = ea[i]
        js = np.flatnonzero(b_has & (eb[:, 0] < y2) & (eb[:, 1] > y1) & (eb[:, 2] < x2) & (eb[:, 3] > x1))
        if js.size:  # count inside the window's overlap with the extents of those masks only
            top, bottom = max(y1, eb[js, 0].min()), min(y2, eb[js, 1].max())
            left, right = max(x1, eb[js, 2].min()), min(x2, eb[js, 3].max())
            both = b[js, top:bottom, left:right] & crops[i][top - y1 : bottom - y1, left - x1 : right - x1]
            inter[i, js] = np.count_nonzero(both.reshape(js.size, -1), axis=1)
    union = (area_a[:, None] + area_b[None, :]) - inter
    np.divide(inter, union, out=out, where=(union > 0) & (inter > 0))
    return out


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class TaskMetrics:
    """COCO metrics of one task ("box" or "mask"); field names follow Ultralytics.

    All values are fractions in [0, 1]. ``nc`` is the number of classes.
    Per-class arrays hold 0 for classes without GT; those classes are left out of every
    mean (``ap_class_index`` lists the classes that had GT). With no GT at all every mean
    is 0.0 (COCOeval would report -1).
    """

    map: float  # mAP50-95: mean over classes with GT of AP averaged over 10 IoU thresholds
    map50: float  # mAP at IoU 0.50
    map75: float  # mAP at IoU 0.75
    maps: np.ndarray  # (nc,) per-class AP50-95
    ap50: np.ndarray  # (nc,) per-class AP50
    ap: np.ndarray  # (nc, 10) per-class AP at each IoU threshold of IOU_THRESHOLDS
    mp: float  # mean over classes with GT of p
    mr: float  # mean over classes with GT of r
    p: np.ndarray  # (nc,) precision at IoU 0.5 at the max-F1 confidence
    r: np.ndarray  # (nc,) recall at IoU 0.5 at the max-F1 confidence
    f1: np.ndarray  # (nc,) F1 at IoU 0.5 at the max-F1 confidence
    conf: float  # the confidence threshold at which p, r, f1 are read
    ap_class_index: np.ndarray  # (K,) int, classes with at least one GT, ascending
    px: np.ndarray  # (101,) recall grid (RECALL_THRESHOLDS) of the PR curve
    prec: np.ndarray  # (nc, 101) COCO-interpolated precision at IoU 0.5 on ``px``
    nt_per_class: np.ndarray  # (nc,) int, GT instances per class
    nt_per_image: np.ndarray  # (nc,) int, images containing the class in GT
    seen: int  # images evaluated

    def mean_results(self) -> list[float]:
        """``[mp, mr, map50, map]``."""
        return [self.mp, self.mr, self.map50, self.map]

    def class_result(self, c: int) -> tuple[float, float, float, float]:
        """``(p, r, ap50, ap50-95)`` of class index ``c``."""
        return float(self.p[c]), float(self.r[c]), float(self.ap50[c]), float(self.maps[c])


@dataclass
class SegmentMetrics:
    """Box and mask metrics of one validation run."""

    box: TaskMetrics
    seg: TaskMetrics

    @property
    def fitness(self) -> float:
        """``sum over box and seg of 0.1 * mAP50 + 0.9 * mAP50-95`` (Ultralytics' weights)."""
        return float(sum(0.1 * t.map50 + 0.9 * t.map for t in (self.box, self.seg)))

    @property
    def results_dict(self) -> dict[str, float]:
        """Flat metric dict with Ultralytics' keys (``metrics/mAP50-95(M)``, ...) and ``fitness``."""
        d = {}
        for t, s in ((self.box, "B"), (self.seg, "M")):
            d[f"metrics/precision({s})"] = float(t.mp)
            d[f"metrics/recall({s})"] = float(t.mr)
            d[f"metrics/mAP50({s})"] = float(t.map50)
            d[f"metrics/mAP50-95({s})"] = float(t.map)
        d["fitness"] = self.fitness
        return d

    def table(self, names) -> str:
        """Per-class table as Ultralytics prints it after val.

        Args:
            names: class names, a list or a ``{index: name}`` dict.

        Returns:
            Header, an "all" row, then one row per class that has GT.
        """
        b = self.box
        head = ("%22s" + "%11s" * 10) % (
            "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)",
            "Mask(P", "R", "mAP50", "mAP50-95)",
        )  # fmt: skip
        pf = "%22s" + "%11s" * 2 + "%11.3g" * 8
        lines = [head, pf % ("all", b.seen, int(b.nt_per_class.sum()), *b.mean_results(), *self.seg.mean_results())]
        for c in b.ap_class_index:
            c = int(c)
            name = names.get(c, str(c)) if isinstance(names, dict) else (names[c] if c < len(names) else str(c))
            lines.append(
                pf % (name, int(b.nt_per_image[c]), int(b.nt_per_class[c]), *b.class_result(c), *self.seg.class_result(c))
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Matching and accumulation
# --------------------------------------------------------------------------------------


def _greedy_match(iou: np.ndarray) -> np.ndarray:
    """COCOeval's greedy matching for one (image, class).

    Args:
        iou: ``(D, G)`` IoU, detections already in descending score order.

    Returns:
        ``(T, D)`` bool, True where the detection is a true positive at that threshold.
    """
    d, g = iou.shape
    t = len(_MATCH_THRESHOLDS)
    tp = np.zeros((t, d), dtype=bool)
    if d == 0 or g == 0:
        return tp
    taken = np.zeros((t, g), dtype=bool)
    rows = np.arange(t)
    row_max = iou.max(axis=1)
    for i in range(d):
        if row_max[i] < _MATCH_THRESHOLDS[0]:
            continue  # cannot match at any threshold
        # candidate IoUs per threshold: unmatched GTs with IoU >= threshold
        cand = np.where(taken, -1.0, iou[i][None, :])  # (T, G)
        ok = cand >= _MATCH_THRESHOLDS[:, None]
        cand = np.where(ok, cand, -1.0)
        # COCOeval keeps the *last* GT among equal best IoUs (it updates on ``>=``)
        j = g - 1 - np.argmax(cand[:, ::-1], axis=1)
        hit = ok.any(axis=1)
        tp[hit, i] = True
        taken[rows[hit], j[hit]] = True
    return tp


def _smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box filter of fraction ``f`` (Ultralytics' ``smooth``)."""
    nf = round(len(y) * f * 2) // 2 + 1
    p = np.ones(nf // 2)
    yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


class MatchAccumulator:
    """Collects per-image matches of one task ("box" or "mask") and computes its metrics.

    Call :meth:`add` once per image (in a fixed image order: COCO concatenates images in
    ``imgIds`` order, which decides the order among equal scores), then :meth:`compute`.
    Only matches are stored, never boxes or masks.
    """

    def __init__(self, max_det: int = 100):
        """``max_det``: detections kept per (image, class), top by score (COCO's maxDets)."""
        self.max_det = int(max_det)
        self._scores: dict[int, list[np.ndarray]] = {}
        self._tp: dict[int, list[np.ndarray]] = {}
        self._nt_per_class: dict[int, int] = {}
        self._nt_per_image: dict[int, int] = {}
        self.seen = 0

    def add(self, pred_scores, pred_classes, gt_classes, iou) -> None:
        """Add one image.

        Args:
            pred_scores: ``(N,)`` detection scores.
            pred_classes: ``(N,)`` int detection classes.
            gt_classes: ``(M,)`` int GT classes.
            iou: ``(N, M)`` IoU between this image's detections and GTs (only same-class
                pairs are used).
        """
        scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        pcls = np.asarray(pred_classes).reshape(-1).astype(np.int64)
        gcls = np.asarray(gt_classes).reshape(-1).astype(np.int64)
        iou = np.asarray(iou, dtype=np.float64)
        n, m = len(scores), len(gcls)
        if len(pcls) != n or iou.shape != (n, m):
            raise ValueError(f"add(): {n} scores, {len(pcls)} classes, {m} GTs but iou of shape {iou.shape}")
        self.seen += 1
        for c in np.unique(gcls).tolist():
            self._nt_per_class[c] = self._nt_per_class.get(c, 0) + int((gcls == c).sum())
            self._nt_per_image[c] = self._nt_per_image.get(c, 0) + 1
        for c in np.unique(pcls).tolist():
            di = np.flatnonzero(pcls == c)
            order = np.argsort(-scores[di], kind="mergesort")[: self.max_det]
            di = di[order]
            gi = np.flatnonzero(gcls == c)
            tp = _greedy_match(iou[np.ix_(di, gi)])
            self._scores.setdefault(c, []).append(scores[di])
            self._tp.setdefault(c, []).append(tp)

    def compute(self, nc: int) -> TaskMetrics:
        """Metrics over everything added, for classes ``0 .. nc-1``."""
        used = set(self._scores) | set(self._nt_per_class)
        bad = [c for c in used if c < 0 or c >= nc]
        if bad:
            raise ValueError(f"class indices {sorted(bad)} outside 0..{nc - 1}")
        t, r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
        nt_per_class = np.zeros(nc, dtype=np.int64)
        nt_per_image = np.zeros(nc, dtype=np.int64)
        for c, v in self._nt_per_class.items():
            nt_per_class[c] = v
        for c, v in self._nt_per_image.items():
            nt_per_image[c] = v
        ap_class_index = np.flatnonzero(nt_per_class > 0)

        precision = np.zeros((nc, t, r))  # COCO-interpolated precision per class
        xc = np.linspace(0, 1, 1000)  # confidence grid (Ultralytics)
        p_curve = np.zeros((nc, len(xc)))
        r_curve = np.zeros((nc, len(xc)))
        for c in ap_class_index.tolist():
            npig = int(nt_per_class[c])
            if c not in self._scores:
                continue  # GT but no detection: precision 0 everywhere
            scores = np.concatenate(self._scores[c])
            tps = np.concatenate(self._tp[c], axis=1)
            nd = len(scores)
            if nd == 0:
                continue
            order = np.argsort(-scores, kind="mergesort")
            scores, tps = scores[order], tps[:, order]
            tp_sum = np.cumsum(tps, axis=1).astype(float)
            fp_sum = np.cumsum(~tps, axis=1).astype(float)
            rc = tp_sum / npig
            pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
            for ti in range(t):
                idx = np.searchsorted(rc[ti], RECALL_THRESHOLDS, side="left")
                valid = idx < nd
                precision[c, ti, valid] = pr[ti, idx[valid]]
            # Ultralytics-style P(conf), R(conf) at IoU 0.5
            tpc = tp_sum[0]
            fpc = fp_sum[0]
            r_curve[c] = np.interp(-xc, -scores, tpc / (npig + 1e-16), left=0)
            p_curve[c] = np.interp(-xc, -scores, tpc / (tpc + fpc), left=1)

        ap = precision.mean(axis=2)  # (nc, T)
        ap[nt_per_class == 0] = 0.0
        maps = ap.mean(axis=1)
        f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
        p = np.zeros(nc)
        r = np.zeros(nc)
        f1 = np.zeros(nc)
        conf = 0.0
        k = len(ap_class_index)
        if k:
            i = int(_smooth(f1_curve[ap_class_index].mean(0), 0.1).argmax())
            conf = float(xc[i])
            p[ap_class_index] = p_curve[ap_class_index, i]
            r[ap_class_index] = r_curve[ap_class_index, i]
            f1[ap_class_index] = f1_curve[ap_class_index, i]

        def mean(x):
            return float(x[ap_class_index].mean()) if k else 0.0

        return TaskMetrics(
            map=mean(maps),
            map50=mean(ap[:, 0]),
            map75=mean(ap[:, 5]),
            maps=maps,
            ap50=ap[:, 0].copy(),
            ap=ap,
            mp=mean(p),
            mr=mean(r),
            p=p,
            r=r,
            f1=f1,
            conf=conf,
            ap_class_index=ap_class_index,
            px=RECALL_THRESHOLDS.copy(),
            prec=precision[:, 0, :].copy(),
            nt_per_class=nt_per_class,
            nt_per_image=nt_per_image,
            seen=self.seen,
        )


class SegmentEvaluator:
    """Box and mask COCO metrics from per-image predictions; what val code uses."""

    def __init__(self, nc: int, max_det: int = 100):
        """``nc``: number of classes; ``max_det``: detections kept per (image, class)."""
        self.nc = int(nc)
        self.max_det = int(max_det)
        self.box = MatchAccumulator(max_det)
        self.seg = MatchAccumulator(max_det)

    def update(
        self,
        pred_boxes,
        pred_scores,
        pred_classes,
        pred_masks,
        gt_boxes,
        gt_classes,
        gt_masks,
        pred_windows=None,
    ) -> None:
        """Add one image.

        Args:
            pred_boxes: ``(N, 4)`` xyxy pixels in the original image.
            pred_scores: ``(N,)`` scores.
            pred_classes: ``(N,)`` int classes.
            pred_masks: ``(N, H, W)`` bool masks at the ORIGINAL image resolution; with
                ``pred_windows``, N crops (``mask_iou``'s ``a``).
            gt_boxes: ``(M, 4)`` xyxy pixels.
            gt_classes: ``(M,)`` int classes.
            gt_masks: ``(M, H, W)`` bool masks at the original resolution.
            pred_windows: optional ``(N, 4)`` int ``y0, y1, x0, x1``: each predicted mask is
                False outside its window and given as its crop there (val passes the boxes'
                ``pixel_windows``), so no full-size mask is made or read.
        """
        pb = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
        ps = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        pc = np.asarray(pred_classes).reshape(-1).astype(np.int64)
        gb = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gc = np.asarray(gt_classes).reshape(-1).astype(np.int64)
        pm = list(pred_masks) if pred_windows is not None else np.asarray(pred_masks)
        gm = np.asarray(gt_masks)
        n, m = len(ps), len(gc)
        if len(pb) != n or len(pc) != n or len(pm) != n or len(gb) != m or len(gm) != m:
            raise ValueError(
                f"update(): inconsistent lengths: boxes {len(pb)}, scores {n}, classes {len(pc)}, "
                f"masks {len(pm)}; GT boxes {len(gb)}, classes {m}, masks {len(gm)}"
            )
        # Keep the top max_det per class (stable), in input order: the accumulators redo
        # the same stable selection, so this only saves IoU work.
        keep = []
        for c in np.unique(pc).tolist():
            di = np.flatnonzero(pc == c)
            keep.append(di[np.argsort(-ps[di], kind="mergesort")[: self.max_det]])
        keep = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
        pb, ps, pc = pb[keep], ps[keep], pc[keep]
        windows = None if pred_windows is None else np.asarray(pred_windows, dtype=np.int64).reshape(-1, 4)[keep]

        biou = np.zeros((len(ps), m))
        miou = np.zeros((len(ps), m))
        for c in np.intersect1d(pc, gc).tolist():  # only same-class pairs can match
            di = np.flatnonzero(pc == c)
            gi = np.flatnonzero(gc == c)
            biou[np.ix_(di, gi)] = box_iou(pb[di], gb[gi])
            if windows is None:
                miou[np.ix_(di, gi)] = mask_iou(pm[keep[di]], gm[gi])
            else:
                miou[np.ix_(di, gi)] = mask_iou([pm[k] for k in keep[di]], gm[gi], windows[di])
        self.box.add(ps, pc, gc, biou)
        self.seg.add(ps, pc, gc, miou)

    def result(self) -> SegmentMetrics:
        """Metrics over all images added so far."""
        return SegmentMetrics(box=self.box.compute(self.nc), seg=self.seg.compute(self.nc))
