"""A ByteTrack-style multi-object tracker in numpy: two-stage association, Kalman motion, tracks that carry their masks.

Each frame (``ByteTracker.update``):

1. every kept track (tracked or lost) is moved one frame ahead by its Kalman filter;
2. high-score detections (``score >= high_score``) are matched to those tracks by IoU (box
   IoU, or with ``association="mask"`` mask IoU for the tracks matched on the previous frame
   and box IoU for lost ones, whose last mask is stale; multiplied by the detection's score
   when ``fuse_score``), accepting pairs with cost ``1 - similarity <= match_cost``;
3. tracks left unmatched that were being tracked get a second chance on the low-score
   detections (``low_score <= score < high_score``) by box IoU (cost <= 0.5): an occluded
   object's weak detection keeps its track alive instead of starting a new one;
4. tracks born on the previous frame and still unconfirmed may take a remaining high-score
   detection (cost <= 0.7), else they are dropped;
5. the remaining high-score detections scoring ``>= new_track_score`` start new tracks,
   confirmed at once on the first frame and otherwise on their second frame;
6. tracks unmatched for more than ``track_buffer`` frames are removed; a lost track that
   overlaps a tracked one (box IoU > 0.85) is removed as its duplicate.

Assignments are solved optimally (``scipy.optimize.linear_sum_assignment``). With mask
association a track's mask is moved by its predicted displacement before it is compared.
"""

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.metrics import box_iou, mask_iou
from edgeseg.runtimes.io.yaml_safe import load_yaml
from edgeseg.runtimes.tracking import kalman

SECOND_STAGE_COST = 0.5
UNCONFIRMED_COST = 0.7
DUPLICATE_IOU = 0.85
MASK_STEP = 4  # masks are compared on every 4th pixel: mask IoU at a quarter of the resolution


@dataclass
class TrackerSettings:
    """What ``ByteTracker`` does with each frame's detections (see the module docstring)."""

    high_score: float = 0.25
    low_score: float = 0.1
    new_track_score: float = 0.25
    track_buffer: int = 30
    match_cost: float = 0.8
    fuse_score: bool = True
    association: str = "box"

    def __post_init__(self):
        if self.association not in ("box", "mask"):
            raise ValueError(f"association must be 'box' or 'mask', not {self.association!r}")
        if not 0 <= self.low_score <= self.high_score <= 1 or not 0 <= self.new_track_score <= 1:
            raise ValueError(f"scores must satisfy 0 <= low_score <= high_score <= 1 (got {self.low_score}, {self.high_score})")
        if self.track_buffer < 0 or not 0 < self.match_cost <= 1:
            raise ValueError(f"track_buffer must be >= 0 and match_cost in (0, 1] (got {self.track_buffer}, {self.match_cost})")

    @classmethod
    def from_yaml(cls, path) -> "TrackerSettings":
        """Settings from a YAML mapping of some of the fields (the rest keep their defaults).

        Raises:
            EdgesegError: ``"<path>: <problem>"``: unreadable YAML, not a mapping, an unknown key,
                a value of the wrong type, or settings that fail the checks above.
        """
        raw = load_yaml(path)
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise EdgesegError(f"{path}: tracker settings must be a mapping of {', '.join(f.name for f in fields(cls))}")
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(map(str, raw)) - set(types))
        if unknown:
            raise EdgesegError(f"{path}: unknown tracker setting {unknown[0]!r} (known: {', '.join(types)})")
        for key, value in raw.items():
            kind = types[key]
            wanted = (int, float) if kind is float else (kind,)
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, wanted):
                raise EdgesegError(f"{path}: tracker setting {key} must be a {kind.__name__}, not {value!r}")
        try:
            return cls(**raw)
        except ValueError as exc:
            raise EdgesegError(f"{path}: {exc}") from None


@dataclass(eq=False)  # tracks are compared by identity
class Track:
    """One tracked object.

    Attributes:
        track_id: its id, from 1, unique within the tracker.
        mean, covariance: its Kalman state (8,) and (8, 8) (``kalman``).
        cls: the class of its latest detection.
        score: the score of its latest detection.
        mask: its latest mask, (H0, W0) bool, or None without masks.
        start_frame, last_frame: the frames (from 1) it was first and last matched.
        frames_seen: frames it was matched on.
        confirmed: matched on two frames (or born on the first frame).
        lost: unmatched on the latest frame.
        mask_areas: px of its mask on each matched frame.
        mask_centre: (x, y) centre of its latest mask's bounding box in px, None without a mask.
    """

    track_id: int
    mean: np.ndarray
    covariance: np.ndarray
    cls: int
    score: float
    mask: np.ndarray | None
    start_frame: int
    last_frame: int
    frames_seen: int = 1
    confirmed: bool = False
    lost: bool = False
    mask_areas: list = field(default_factory=list)
    mask_centre: tuple[float, float] | None = None

    def take_mask(self, mask: np.ndarray) -> None:
        """Keep ``mask`` (H0, W0) bool as its latest mask, with its area and centre (measured once, here)."""
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        self.mask, self.mask_centre = mask, (x + w / 2, y + h / 2) if w else None
        self.mask_areas.append(int(np.count_nonzero(mask)))

    @property
    def box(self) -> np.ndarray:
        """(4,) x1, y1, x2, y2 of its current state."""
        return kalman.xyah_to_xyxy(self.mean[None])[0]

    def summary(self) -> dict:
        """``id``, ``class``, ``first_frame``, ``last_frame``, ``frames_seen`` and ``mean_mask_area`` (px, None without masks)."""
        area = float(np.mean(self.mask_areas)) if self.mask_areas else None
        return {"id": self.track_id, "class": self.cls, "first_frame": self.start_frame, "last_frame": self.last_frame,
                "frames_seen": self.frames_seen, "mean_mask_area": area}  # fmt: skip


def shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` (H, W) bool moved by (dx, dy) px, filled with False where it leaves the frame."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) < w and abs(dy) < h:
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def assign(cost: np.ndarray, limit: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """The minimum-cost one-to-one matching of rows and columns, keeping pairs with cost <= ``limit``.

    Returns:
        (matched (row, col) pairs, unmatched rows, unmatched cols).
    """
    from scipy.optimize import linear_sum_assignment

    if not cost.size:
        return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
    rows, cols = linear_sum_assignment(cost)
    pairs = [(r, c) for r, c in zip(rows, cols) if cost[r, c] <= limit]
    matched_rows, matched_cols = {r for r, _ in pairs}, {c for _, c in pairs}
    return pairs, [r for r in range(cost.shape[0]) if r not in matched_rows], [c for c in range(cost.shape[1]) if c not in matched_cols]


class ByteTracker:
    """Associates each frame's detections with tracks; see the module docstring.

    Args:
        settings: TrackerSettings (the defaults when None).
    """

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self.frame = 0
        self.tracks: list[Track] = []  # confirmed or new, tracked or lost
        self.finished: list[Track] = []  # removed tracks that were confirmed, for summaries
        self._next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Take one frame's detections; return each detection's track id.

        Args:
            boxes: (N, 4) xyxy in px; scores: (N,); classes: (N,) int.
            masks: (N, H0, W0) bool, needed with ``association="mask"``, else optional.

        Returns:
            (N,) int64: the id of the confirmed track a detection belongs to, or -1 (a low-score
            detection no track took, or a new track not yet confirmed).
        """
        s = self.settings
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores, classes = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
        if s.association == "mask" and masks is None:
            raise ValueError("mask association needs the detections' masks")
        self.frame += 1
        owner = np.full(len(boxes), -1, dtype=np.int64)
        self._predict()
        high = np.flatnonzero(scores >= s.high_score)
        low = np.flatnonzero((scores >= s.low_score) & (scores < s.high_score))
        confirmed = [t for t in self.tracks if t.confirmed]
        unconfirmed = [t for t in self.tracks if not t.confirmed]

        cost = self._cost(confirmed, high, boxes, scores, masks, s.association, s.fuse_score)
        pairs, left_tracks, left_high = assign(cost, s.match_cost)
        for r, c in pairs:
            self._match(confirmed[r], high[c], boxes, scores, classes, masks, owner)
        still_tracked = [confirmed[r] for r in left_tracks if not confirmed[r].lost]
        cost = self._cost(still_tracked, low, boxes, scores, masks, "box", False)
        pairs, left, _ = assign(cost, SECOND_STAGE_COST)
        for r, c in pairs:
            self._match(still_tracked[r], low[c], boxes, scores, classes, masks, owner)
        for r in left:
            still_tracked[r].lost = True

        high = high[left_high]
        cost = self._cost(unconfirmed, high, boxes, scores, masks, "box", s.fuse_score)
        pairs, left, left_high = assign(cost, UNCONFIRMED_COST)
        for r, c in pairs:
            unconfirmed[r].confirmed = True
            self._match(unconfirmed[r], high[c], boxes, scores, classes, masks, owner)
        dropped = {id(unconfirmed[r]) for r in left}
        self.tracks = [t for t in self.tracks if id(t) not in dropped]
        for c in high[left_high]:
            if scores[c] >= s.new_track_score:
                self._start(c, boxes, scores, classes, masks, owner)
        self._retire()
        return owner

    def summaries(self) -> list[dict]:
        """``Track.summary`` of every confirmed track so far, removed ones included, by id."""
        tracks = self.finished + [t for t in self.tracks if t.confirmed]
        return [t.summary() for t in sorted(tracks, key=lambda t: t.track_id)]

    def _predict(self) -> None:
        """Move every track one frame ahead (a lost track's height velocity is zeroed, as it is no longer seen)."""
        if not self.tracks:
            return
        means = np.stack([t.mean for t in self.tracks])
        for i, t in enumerate(self.tracks):
            if t.lost:
                means[i, 7] = 0
        means, covariances = kalman.predict(means, np.stack([t.covariance for t in self.tracks]))
        for t, mean, covariance in zip(self.tracks, means, covariances):
            t.mean, t.covariance = mean, covariance

    def _cost(self, tracks: list[Track], dets: np.ndarray, boxes, scores, masks, association: str, fuse: bool) -> np.ndarray:
        """(len(tracks), len(dets)) cost ``1 - similarity`` (box IoU, or mask IoU for tracks not lost with ``association="mask"``; times the score when ``fuse``)."""
        if not tracks or not len(dets):
            return np.zeros((len(tracks), len(dets)))
        similarity = box_iou(np.stack([t.box for t in tracks]), boxes[dets])
        if association == "mask":
            # a lost track's last mask shows the object as it was frames ago (often half hidden or
            # half out of the frame): its Kalman box is the better guess, so it keeps box IoU
            seen = np.flatnonzero([not t.lost for t in tracks])
            if len(seen):
                moved = np.stack([self._moved_mask(tracks[i], masks.shape[1:]) for i in seen])
                similarity[seen] = mask_iou(moved[:, ::MASK_STEP, ::MASK_STEP], masks[dets][:, ::MASK_STEP, ::MASK_STEP])
        if fuse:
            similarity = similarity * scores[dets][None]
        return 1 - similarity

    @staticmethod
    def _moved_mask(track: Track, shape: tuple[int, int]) -> np.ndarray:
        """The track's latest mask moved to its predicted centre (an empty mask when it has none)."""
        if track.mask is None or track.mask.shape != tuple(shape):
            return np.zeros(shape, dtype=bool)
        if track.mask_centre is None:
            return track.mask
        dx, dy = track.mean[0] - track.mask_centre[0], track.mean[1] - track.mask_centre[1]
        return shifted(track.mask, int(round(dx)), int(round(dy)))

    def _match(self, track: Track, det: int, boxes, scores, classes, masks, owner) -> None:
        """Correct ``track`` with detection ``det`` and mark it tracked."""
        track.mean, track.covariance = kalman.update(track.mean, track.covariance, kalman.xyxy_to_xyah(boxes[det : det + 1])[0])
        track.cls, track.score, track.lost = int(classes[det]), float(scores[det]), False
        track.last_frame = self.frame
        track.frames_seen += 1
        if masks is not None:
            track.take_mask(masks[det])
        if track.confirmed:
            owner[det] = track.track_id

    def _start(self, det: int, boxes, scores, classes, masks, owner) -> None:
        """A new track from detection ``det``, confirmed at once on the first frame."""
        mean, covariance = kalman.initiate(kalman.xyxy_to_xyah(boxes[det : det + 1])[0])
        track = Track(self._next_id, mean, covariance, int(classes[det]), float(scores[det]), None, self.frame, self.frame,
                      confirmed=self.frame == 1)  # fmt: skip
        if masks is not None:
            track.take_mask(masks[det])
        self._next_id += 1
        self.tracks.append(track)
        if track.confirmed:
            owner[det] = track.track_id

    def _retire(self) -> None:
        """Remove tracks unseen for more than ``track_buffer`` frames, and lost tracks that duplicate tracked ones."""
        limit = self.settings.track_buffer
        old = [t for t in self.tracks if self.frame - t.last_frame > limit]
        tracked = [t for t in self.tracks if not t.lost and t.confirmed]
        lost = [t for t in self.tracks if t.lost and all(t is not o for o in old)]
        if tracked and lost:
            overlap = box_iou(np.stack([t.box for t in lost]), np.stack([t.box for t in tracked]))
            old += [t for t, row in zip(lost, overlap) if row.max() > DUPLICATE_IOU]
        gone = {id(t) for t in old}
        self.finished += [t for t in old if t.confirmed]
        self.tracks = [t for t in self.tracks if id(t) not in gone]
