"""Comparing two models' outputs on the same images: matching, near-ties, IoUs, output differences and mAP."""

from dataclasses import dataclass

import numpy as np

from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.evaluation.metrics import box_iou
from edgeseg.runtimes.evaluation.validate import VAL_CONF, VAL_IOU, VAL_MAX_DET, evaluate
from edgeseg.runtimes.pipeline.end2end import detections_to_preds, host_detections
from edgeseg.runtimes.pipeline.postprocess import non_max_suppression, postprocess, scale_boxes, xywh2xyxy
from edgeseg.targets.verify.inputs import CHUNK

CONF = 0.25  # detection threshold for the agreement
MIN_DETECTIONS = 5  # below this many reference detections at CONF, the threshold is lowered ...
TOP_K = 50  # ... to keep the reference's TOP_K best detections (found by NMS at LOWEST_CONF)
LOWEST_CONF = 0.0  # every anchor: an untrained model scores ~1e-4
MATCH_IOU = 0.5  # box IoU for two detections of the same class to count as the same object
LOW_PERCENTILE = 5  # the low percentile of the matched IoUs that is judged


def _finite_max(values: np.ndarray) -> float:
    """The largest finite value (0.0 when there is none): the ``finite`` check covers the others."""
    return float(values[np.isfinite(values)].max(initial=0.0))

def output_diff(ref: tuple[np.ndarray, np.ndarray], art: tuple[np.ndarray, np.ndarray], nc: int, shape) -> dict:
    """Max abs differences of (preds (B, 4 + nc + nm, A), protos (B, nm, h, w)) on a 0–1 scale (see module docstring).

    Returns:
        ``preds``, ``protos``, ``boxes``, ``scores``, ``coefficients``: floats, over the finite elements.
    """
    (ref_preds, ref_protos), (art_preds, art_protos) = ref, art
    scale = np.ones((1, ref_preds.shape[1], 1), np.float32)
    scale[0, [0, 2], 0] = shape[1]
    scale[0, [1, 3], 0] = shape[0]
    scale[0, 4 + nc :, 0] = max(float(np.abs(ref_preds[:, 4 + nc :]).max(initial=0.0)), 1e-6)
    preds = np.abs(ref_preds - art_preds) / scale
    protos = np.abs(ref_protos - art_protos) / max(float(np.abs(ref_protos).max(initial=0.0)), 1e-6)
    return {
        "preds": _finite_max(preds),
        "protos": _finite_max(protos),
        "boxes": _finite_max(preds[:, :4]),
        "scores": _finite_max(preds[:, 4 : 4 + nc]),
        "coefficients": _finite_max(preds[:, 4 + nc :]),
    }

def match(a, b, min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """One-to-one (i, j) pairs of Results ``a`` and ``b`` detections: same class, box IoU ≥ ``min_iou``, best IoU first."""
    iou = box_iou(a.boxes, b.boxes)
    iou[a.classes[:, None] != b.classes[None, :]] = 0
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if i not in used_a and j not in used_b:
            pairs.append((int(i), int(j)))
            used_a.add(i)
            used_b.add(j)
    return pairs

def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0

def borderline_score(conf: float, logit_margin: float) -> float:
    """The score ``logit_margin`` logits above ``conf``: detections in (conf, this) are borderline."""
    logit = np.log(conf / (1 - conf)) if 0 < conf < 1 else (-np.inf if conf <= 0 else np.inf)
    return float(1 / (1 + np.exp(-(logit + logit_margin))))

def logit(p) -> np.ndarray:
    """log(p / (1 - p)) of scores in [0, 1], as float64; 0 and 1 are clipped to 1e-12 and 1 - 1e-12."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))

@dataclass
class Candidates:
    """One image's outputs before NMS, where an unmatched detection of the other side may be found (a near-tie).

    Attributes:
        boxes: (A, 4) float32 xyxy in source px, one per anchor (or per detection of an end-to-end artifact).
        scores: (A, nc) float32 class scores after sigmoid.
    """

    boxes: np.ndarray
    scores: np.ndarray


def image_candidates(preds: np.ndarray, info, nc: int, floor: float) -> Candidates:
    """The anchors of one image's (4 + nc + nm, A) ``preds`` whose best class score is ≥ ``floor``, as Candidates.

    ``info`` is the image's LetterboxInfo: boxes go from input px (cx, cy, w, h) to source px
    (xyxy, clipped), as the detections they are compared with.
    """
    scores = preds[4 : 4 + nc]
    keep = np.flatnonzero(scores.max(0, initial=0.0) >= floor) if scores.size else np.zeros(0, np.int64)
    return Candidates(scale_boxes(xywh2xyxy(preds[:4, keep].T), info), np.ascontiguousarray(scores[:, keep].T))

class CandidatesPerImage:
    """Each image's Candidates, made when first asked for: only an image with an unmatched detection needs them.

    Args:
        preds: (B, 4 + nc + nm, A) one side's outputs; infos: the B LetterboxInfo; nc: classes;
        floor: the lowest best-class score kept (``image_candidates``).
    """

    def __init__(self, preds: np.ndarray, infos: list, nc: int, floor: float):
        self._preds, self._infos, self._nc, self._floor = preds, infos, nc, floor
        self._made: dict[int, Candidates] = {}

    def __getitem__(self, k: int) -> Candidates:
        """The Candidates of image ``k``."""
        if k not in self._made:
            self._made[k] = image_candidates(self._preds[k], self._infos[k], self._nc, self._floor)
        return self._made[k]


def tied(box: np.ndarray, cls: int, score: float, candidates: Candidates, logit_margin: float) -> bool:
    """Whether ``candidates`` hold a detection (a (4,) xyxy source-px ``box`` of class ``cls`` scoring ``score``).

    True when some candidate box overlaps it with IoU ≥ MATCH_IOU and scores, for class ``cls``
    (its best class or not: near-equal class scores swap too), within ``logit_margin`` logits of ``score``.
    """
    if len(candidates.boxes) == 0:
        return False
    close = np.abs(logit(candidates.scores[:, cls]) - logit(score)) <= logit_margin
    if not close.any():
        return False
    return bool((box_iou(box[None], candidates.boxes[close])[0] >= MATCH_IOU).any())

def ranked_as_reference(preds: np.ndarray, reference: np.ndarray, nc: int, logit_margin: float) -> np.ndarray:
    """The artifact's (B, 4 + nc + nm, A) ``preds`` with each class score within ``logit_margin`` of the reference's taking its value.

    Greedy NMS keeps the higher-scored of two overlapping boxes; of two nearly equal scores the
    last bit decides, so two models equal to 1e-7 can keep different boxes. With the scores that
    agree within the margin replaced, the artifact ranks its anchors as the reference does; its
    boxes, mask coefficients and every score that moved further stay its own.

    Args:
        preds, reference: (B, 4 + nc + nm, A) outputs of the artifact and of the reference.
        nc: number of classes; logit_margin: the window, in logits.

    Returns:
        A new (B, 4 + nc + nm, A) float32 array.
    """
    out = preds.copy()
    scores, ref_scores = out[:, 4 : 4 + nc], reference[:, 4 : 4 + nc]
    close = np.abs(logit(scores) - logit(ref_scores)) <= logit_margin
    scores[close] = ref_scores[close]
    return out

def _unmatched_counts(result, matched: list[int], borderline: float, other, logit_margin: float) -> tuple[int, int, int]:
    """(clear, borderline, tied) counts of ``result``'s detections whose index is not in ``matched``.

    Borderline: scoring below ``borderline``. Tied: clear of it, but ``tied`` in ``other()`` (the
    other side's Candidates, asked for only when there is such a detection; None finds no tie).
    """
    unmatched = np.setdiff1d(np.arange(len(result.scores)), matched)
    clear = unmatched[result.scores[unmatched] >= borderline]
    held = other() if other is not None and len(clear) else None
    ties = 0 if held is None else sum(
        tied(result.boxes[i], int(result.classes[i]), float(result.scores[i]), held, logit_margin) for i in clear
    )  # fmt: skip
    return len(clear) - ties, len(unmatched) - len(clear), ties


def compare_detections(
    reference: list, artifact: list, borderline: float, candidates: dict | None = None, logit_margin: float = 0.0
) -> dict:
    """Match each image's detections of two models and measure how they differ.

    Args:
        reference, artifact: one Results per image (same images, same order) of each model.
        borderline: unmatched detections scoring below this do not count as a disagreement.
        candidates: ``{"reference": Candidates per image (a list or CandidatesPerImage), "artifact": ...}``, each side's
            outputs before NMS; an unmatched detection that the other side holds there (``tied``)
            does not count as a disagreement. None: no tie is looked for.
        logit_margin: the score window of a tie, in logits.

    Returns:
        ``reference``, ``artifact``, ``matched``: detection counts; ``compared``: the denominator of
        ``agreement``; ``unmatched``, ``borderline`` and ``tied``: ``{"reference": n, "artifact": n}``,
        the unmatched detections counted as disagreements and those left out as borderline or
        tied; ``agreement``: matched / (matched + per image the larger unmatched count), 1.0 when
        nothing is compared; ``box_ious``, ``mask_ious`` and ``score_changes``: float arrays over
        the matched pairs (|score difference|).
    """
    sides = ("unmatched", "borderline", "tied")
    out = {"matched": 0, "compared": 0, **{key: {"reference": 0, "artifact": 0} for key in sides}}
    box_ious, mask_ious, score_changes = [], [], []
    for k, (a, b) in enumerate(zip(reference, artifact)):
        pairs = match(a, b)
        clear = {}
        for side, other, result, used in (
            ("reference", "artifact", a, [i for i, _ in pairs]), ("artifact", "reference", b, [j for _, j in pairs])
        ):
            held = (lambda other=other, k=k: candidates[other][k]) if candidates else None
            counts = _unmatched_counts(result, used, borderline, held, logit_margin)
            for key, count in zip(sides, counts):
                out[key][side] += count
            clear[side] = counts[0]
        out["matched"] += len(pairs)
        out["compared"] += len(pairs) + max(clear.values())
        iou = box_iou(a.boxes, b.boxes)
        box_ious += [float(iou[i, j]) for i, j in pairs]
        mask_ious += [_mask_iou(a.masks[i], b.masks[j]) for i, j in pairs]
        score_changes += [abs(float(a.scores[i]) - float(b.scores[j])) for i, j in pairs]
    out["reference"] = sum(map(len, reference))
    out["artifact"] = sum(map(len, artifact))
    out["agreement"] = out["matched"] / out["compared"] if out["compared"] else 1.0
    out["box_ious"], out["mask_ious"], out["score_changes"] = map(np.asarray, (box_ious, mask_ious, score_changes))
    return out

def iou_summary(ious: np.ndarray) -> dict:
    """``{"mean", "p5"}`` of (N,) IoUs (p5: the LOW_PERCENTILE-th percentile); None values when N is 0."""
    if len(ious) == 0:
        return {"mean": None, "p5": None}
    return {"mean": float(ious.mean()), "p5": float(np.percentile(ious, LOW_PERCENTILE))}

def _replay(inputs: np.ndarray, outputs: tuple[np.ndarray, np.ndarray]):
    """An ``infer`` for ``evaluate`` that hands back precomputed outputs instead of running a model again.

    Args:
        inputs: (N, 3, H, W) the batch the outputs were computed on.
        outputs: its (preds (N, ...), protos (N, ...)).

    Returns:
        ``infer(batch)`` → the outputs of the next ``len(batch)`` images, which must be those inputs.

    Raises (from ``infer``):
        ValueError: ``batch`` is not the next slice of ``inputs`` (images and labels out of step).
    """
    done = 0

    def infer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal done
        rows = slice(done, done + len(batch))
        if not np.array_equal(batch, inputs[rows]):
            raise ValueError("verify: the labelled images differ from the images verified (labels out of step with images)")
        done = rows.stop
        return outputs[0][rows], outputs[1][rows]

    return infer

def map_delta(
    inputs: np.ndarray,
    outputs: dict,
    labels: list[Label],
    nc: int,
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = VAL_MAX_DET,
    selection: str = "nms",
    multi_label: bool = True,
) -> dict:
    """Box and mask mAP50-95 of both models on the labelled images, through ``evaluate`` (the code of ``Runtime.val``).

    Args:
        inputs: (N, 3, S, S) the labelled images letterboxed to a square input, in ``labels`` order.
        outputs: ``{"reference": (preds, protos), "artifact": (preds, protos)}`` of ``inputs``.
        labels: the N images' Labels.
        nc: the models' class count.
        conf, iou, max_det: the post-processing of both evaluations (an end-to-end artifact's
            own NMS settings when they are stricter than val's).
        selection: how both sides' detections are picked (``ModelMeta.selection``: nms or topk).
        multi_label: val's multi-label NMS on both sides (False for an artifact with NMS in its
            graph, which keeps each anchor's best class only).

    Returns:
        ``images``, ``reference`` and ``artifact`` (``{"box", "mask"}`` mAP50-95 in [0, 1]) and
        ``delta`` (artifact - reference); or ``{"skipped": why}`` for a non-square input or
        labels with classes the model does not have.
    """
    h, w = inputs.shape[2:]
    if h != w:
        return {"skipped": f"mAP needs a square input, this one is {h}x{w}"}
    if max((int(label.cls.max(initial=-1)) for label in labels), default=-1) >= nc:
        return {"skipped": f"the labels have class ids beyond the model's {nc} classes"}
    maps = {}
    for side, output in outputs.items():
        metrics = evaluate(_replay(inputs, output), labels, nc, h, batch=CHUNK, conf=conf, iou=iou, max_det=max_det, progress=False, selection=selection, multi_label=multi_label)
        maps[side] = {"box": float(metrics.box.map), "mask": float(metrics.seg.map)}
    delta = {task: maps["artifact"][task] - maps["reference"][task] for task in ("box", "mask")}
    return {"images": len(labels), **maps, "delta": delta}

def _lowered_conf(preds: np.ndarray, nc: int) -> float:
    """A threshold that keeps the TOP_K best detections of (B, 4 + nc + nm, A) ``preds`` (or all of them).

    It lies halfway between the TOP_K-th and the next score (after NMS at LOWEST_CONF), so no
    reference detection sits on it; when the two are equal (a train-free model can score every
    anchor alike) it lies just below them, keeping every detection of that score.
    """
    scores = np.sort(np.concatenate([non_max_suppression(p, nc, conf=LOWEST_CONF)[1] for p in preds]))[::-1]
    if len(scores) == 0:
        return CONF
    k = min(TOP_K, len(scores)) - 1
    below = scores[k + 1] if k + 1 < len(scores) else LOWEST_CONF
    middle = (scores[k] + np.float32(below)) / 2
    return float(middle if middle < scores[k] else np.nextafter(scores[k], np.float32(0)))

def _by_position(preds: np.ndarray, nc: int) -> np.ndarray:
    """(B, 4 + nc + nm, D) detections in the preds layout, each image's columns sorted by class, then x, then y; empty ones last."""
    classes = np.where(preds[:, 4 : 4 + nc].max(1) > 0, preds[:, 4 : 4 + nc].argmax(1), nc)
    order = [np.lexsort((p[1].round(1), p[0].round(1), c)) for p, c in zip(preds, classes)]
    return np.stack([p[:, o] for p, o in zip(preds, order)])

def as_detections(ref: tuple, art: tuple, nc: int, nms: dict, selection: str = "nms") -> tuple[tuple, tuple]:
    """Both sides of an end-to-end comparison as detections in the preds layout, in the same order.

    The reference's raw outputs go through the host's NMS (or top-k, ``selection``) at the
    artifact's settings (``end2end_settings``); both sides' detections are then sorted by
    position, so that two near-equal scores ranked the other way round do not count as a difference.
    """
    reference = detections_to_preds(host_detections(ref[0], nc, **nms, selection=selection), nc)
    return (_by_position(reference, nc), ref[1]), (_by_position(art[0], nc), art[1])

def compare_outputs(
    ref: tuple, art: tuple, infos: list, shape: tuple[int, int], names: dict, logit_margin: float, nms: dict, selection: str = "nms"
):
    """Post-process both models' (preds, protos) at CONF (lowered for a reference with few detections; raised to an end-to-end artifact's floor) and compare.

    A raw-output artifact is post-processed ``ranked_as_reference``, so that near-equal scores
    make the same NMS decisions on both sides. Each side's anchors scoring within ``logit_margin``
    below the threshold or higher are the Candidates where the other side's unmatched detections
    are looked for (``tied``): that covers an end-to-end artifact, whose NMS ran in its graph.

    Args:
        ref, art: (preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4)) of the reference and the artifact.
        infos: B LetterboxInfo; shape: the (H, W) input; names: ``{class id: name}``.
        logit_margin: how far above the threshold, in logits, an unmatched detection is still borderline.
        nms: an end-to-end artifact's settings (``end2end_settings``, else empty): both sides are
            post-processed at its ``iou`` and ``max_det``, and the threshold is never lowered below its ``conf``.
        selection: how both sides' detections are picked (``ModelMeta.selection``: nms or topk).

    Returns:
        (the threshold used, whether it was lowered below CONF, the borderline score,
        ``compare_detections``'s result).
    """
    conf = max(CONF, nms.get("conf", 0.0))
    settings = {"nc": len(names), "names": names, "iou": nms.get("iou", 0.7), "max_det": nms.get("max_det", 300), "selection": selection}
    ref_results = postprocess(*ref, infos, shape, conf=conf, **settings)
    if sum(map(len, ref_results)) < MIN_DETECTIONS:
        conf = max(_lowered_conf(ref[0], len(names)), nms.get("conf", 0.0))
        ref_results = postprocess(*ref, infos, shape, conf=conf, **settings)
    ranked = art if nms else (ranked_as_reference(art[0], ref[0], len(names), logit_margin), art[1])
    art_results = postprocess(*ranked, infos, shape, conf=conf, **settings)
    borderline = borderline_score(conf, logit_margin)
    floor = borderline_score(conf, -logit_margin)  # no tie scores lower: every detection is >= conf
    candidates = {side: CandidatesPerImage(outputs[0], infos, len(names), floor) for side, outputs in (("reference", ref), ("artifact", art))}
    return conf, conf < CONF, borderline, compare_detections(ref_results, art_results, borderline, candidates, logit_margin)
