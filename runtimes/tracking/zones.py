"""Counting tracked objects that enter or leave a polygon zone, or cross a line, decided by their masks.

A ``ZoneCounter`` takes the tracked Results of each frame (``Runtime.track``) and keeps, per
sequence (each video, or the still images), every track's state towards every zone:

- ``PolygonZone``: a track is *inside* once at least ``overlap`` of its mask's area lies in the
  polygon, and *outside* again once less than half that does (the gap keeps a mask that
  flickers on the border from counting twice). ``in`` counts outside → inside changes, ``out``
  the reverse; ``inside`` is how many tracks are in the zone now.
- ``LineZone``: a track's side of the line is where at least ``overlap`` of its mask's area lies
  (between the two thresholds the side stays as it was). A change of side counts when the mask's
  centre is within the segment's span: ``in`` when the mask moves onto the line's right-hand
  side, looking from ``start`` to ``end`` on the image (below a line drawn left to right),
  ``out`` when it moves back.

A track's first frame only sets its state: an object first seen inside a zone has not entered it.
Counts are kept per class name. ``ZoneCounter.draw`` draws the zones and counts on a frame, and
``Trails`` the recent path of each track's mask centre.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgeseg.runtimes.io.sources import sequence_of
from edgeseg.runtimes.pipeline.results import Results, class_color, draw_label

ZONE_COLOR = (0, 215, 255)  # BGR amber: zones and their counts


def mask_centre(mask: np.ndarray) -> tuple[float, float] | None:
    """The (x, y) centre of mass in pixels of an (H, W) bool mask, or None when it is empty."""
    moments = cv2.moments(mask.view(np.uint8), binaryImage=True)
    if moments["m00"] == 0:
        return None
    return moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]


def _points(points, count: int | None, what: str) -> np.ndarray:
    """``points`` as a (K, 2) float64 array of (x, y) pixels; raises ValueError naming ``what`` otherwise."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all():
        raise ValueError(f"{what}: expected (x, y) pixel points, got {points!r}")
    if (count is not None and len(array) != count) or len(array) < (count or 3):
        raise ValueError(f"{what}: needs {count or 'at least 3'} points, got {len(array)}")
    return array


@dataclass
class PolygonZone:
    """A polygon on the source image; a track is in it when ``overlap`` of its mask's area is.

    Args:
        points: (K >= 3, 2) polygon corners, (x, y) in source-image pixels.
        name: how counts and drawings name the zone.
        overlap: the share of a mask's area (0 to 1] that must lie inside to be inside.
    """

    points: np.ndarray
    name: str = "zone"
    overlap: float = 0.5
    _rasters: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (H, W) → the polygon rasterised, cropped to its box

    def __post_init__(self):
        self.points = _points(self.points, None, f"zone {self.name!r}")
        if not 0 < self.overlap <= 1:
            raise ValueError(f"zone {self.name!r}: overlap must be in (0, 1], got {self.overlap}")

    def shares(self, masks: np.ndarray) -> np.ndarray:
        """(N,) share of each of ``masks`` (N, H, W) bool's area inside the polygon (0 for empty masks)."""
        h, w = masks.shape[1:]
        if (h, w) not in self._rasters:
            raster = np.zeros((h, w), np.uint8)
            cv2.fillPoly(raster, [np.round(self.points).astype(np.int32)], 1)
            x, y, bw, bh = cv2.boundingRect(raster)
            self._rasters[(h, w)] = (raster[y : y + bh, x : x + bw].astype(bool), (slice(y, y + bh), slice(x, x + bw)))
        raster, (rows, cols) = self._rasters[(h, w)]
        area = masks.sum((1, 2))
        inside = (masks[:, rows, cols] & raster).sum((1, 2))
        return np.where(area > 0, inside / np.maximum(area, 1), 0.0)

    def states(self, masks: np.ndarray, previous: list[bool | None]) -> list[bool | None]:
        """Each mask's new state (True inside), given its previous one (None for a new track)."""
        shares = self.shares(masks)
        return [bool(share >= self.overlap or (was is True and share >= self.overlap / 2)) for share, was in zip(shares.tolist(), previous)]

    def label_at(self) -> tuple[int, int]:
        """Where the zone's counts are written: its top-left corner (pixels)."""
        return int(self.points[:, 0].min()), int(self.points[:, 1].min())

    def draw(self, canvas: np.ndarray) -> None:
        """Outline the polygon on an (H, W, 3) uint8 BGR canvas, in place."""
        cv2.polylines(canvas, [np.round(self.points).astype(np.int32)], True, ZONE_COLOR, 2, cv2.LINE_AA)


@dataclass
class LineZone:
    """A line segment on the source image; a track crosses it when most of its mask changes side.

    Args:
        start, end: the segment's ends, (x, y) in source-image pixels. ``in`` is a crossing onto
            the right-hand side looking from ``start`` to ``end`` on the image.
        name: how counts and drawings name the line.
        overlap: the share of a mask's area (0.5 to 1] that must lie on one side to be on it.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    name: str = "line"
    overlap: float = 0.75

    def __post_init__(self):
        (x0, y0), (x1, y1) = _points([self.start, self.end], 2, f"line {self.name!r}")
        if (x0, y0) == (x1, y1):
            raise ValueError(f"line {self.name!r}: start and end are the same point")
        if not 0.5 < self.overlap <= 1:
            raise ValueError(f"line {self.name!r}: overlap must be in (0.5, 1], got {self.overlap}")
        self.start, self.end = (x0, y0), (x1, y1)

    def _side(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed side of pixel centres (x, y): > 0 on the right-hand side looking from start to end."""
        (x0, y0), (x1, y1) = self.start, self.end
        return (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)

    def spans(self, point: tuple[float, float]) -> bool:
        """Whether ``point`` (x, y) projects onto the segment (between its ends, not beyond them)."""
        (x0, y0), (x1, y1) = self.start, self.end
        dx, dy = x1 - x0, y1 - y0
        t = ((point[0] - x0) * dx + (point[1] - y0) * dy) / (dx * dx + dy * dy)
        return 0 <= t <= 1

    def states(self, masks: np.ndarray, previous: list[bool | None]) -> list[bool | None]:
        """Each mask's side (True right-hand, False left, None undecided), given its previous one."""
        sides = []
        for mask, was in zip(masks, previous):
            ys, xs = np.nonzero(mask)
            if not len(xs):
                sides.append(was)
                continue
            right = float((self._side(xs + 0.5, ys + 0.5) > 0).mean())
            if was is None:
                sides.append(right >= 0.5)
            else:
                sides.append(True if right >= self.overlap else False if right <= 1 - self.overlap else was)
        return sides

    def counts_change(self, mask: np.ndarray) -> bool:
        """Whether a change of side of ``mask`` (H, W) bool counts: its centre is within the segment's span."""
        centre = mask_centre(mask)
        return centre is not None and self.spans(centre)

    def label_at(self) -> tuple[int, int]:
        """Where the line's counts are written: its start (pixels)."""
        return int(self.start[0]), int(self.start[1])

    def draw(self, canvas: np.ndarray) -> None:
        """Draw the segment, with an arrow towards its ``in`` side, on an (H, W, 3) uint8 BGR canvas, in place."""
        (x0, y0), (x1, y1) = self.start, self.end
        cv2.line(canvas, (round(x0), round(y0)), (round(x1), round(y1)), ZONE_COLOR, 2, cv2.LINE_AA)
        mx, my, length = (x0 + x1) / 2, (y0 + y1) / 2, float(np.hypot(x1 - x0, y1 - y0))
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length  # the right-hand normal on the image (y down)
        tip = (round(mx + 15 * nx), round(my + 15 * ny))
        cv2.arrowedLine(canvas, (round(mx), round(my)), tip, ZONE_COLOR, 2, cv2.LINE_AA, tipLength=0.4)


class ZoneCounter:
    """Counts of tracks entering and leaving zones and crossing lines, per sequence and class.

    ::

        counter = ZoneCounter([PolygonZone([(0, 0), (200, 0), (200, 120), (0, 120)], "dock"),
                               LineZone((240, 0), (240, 320), "gate")])
        for result in runtime.track("clip.avi"):
            counter.update(result)
        counter.counts  # {"clip.avi": {"dock": {"in": {"circle": 2}, "out": {...}, "inside": {...}}, "gate": {...}}}

    Args:
        zones: PolygonZone and LineZone objects, with distinct names.

    Raises:
        ValueError: no zones, or two with the same name.
    """

    def __init__(self, zones):
        self.zones = list(zones)
        names = [zone.name for zone in self.zones]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"ZoneCounter needs zones with distinct names, got {names}")
        self._states: dict = defaultdict(dict)  # (sequence, zone name) → {track id: state}
        self._counts: dict = {}  # sequence → zone name → "in"/"out" → class name → count

    def update(self, result: Results) -> list[dict]:
        """Take one frame's tracked Results (with ``track_ids``); return its events.

        Returns:
            ``[{"zone", "direction" ("in"/"out"), "track_id", "class"}]`` for this frame.

        Raises:
            ValueError: ``result`` has no ``track_ids`` (it did not come from ``Runtime.track``).
        """
        if result.track_ids is None:
            raise ValueError("ZoneCounter.update needs tracked Results (Runtime.track), these have no track_ids")
        sequence = sequence_of(result.path)
        counts = self._sequence_counts(sequence)
        events = []
        ids = [int(i) for i in result.track_ids]
        classes = [result.names.get(int(c), str(int(c))) for c in result.classes]
        for zone in self.zones:
            known = self._states[(sequence, zone.name)]
            previous = [known.get(i) for i in ids]
            states = zone.states(result.masks, previous) if ids else []
            for i, (track_id, was, now) in enumerate(zip(ids, previous, states)):
                known[track_id] = now
                if was is None or now is None or was == now:
                    continue
                if isinstance(zone, LineZone) and not zone.counts_change(result.masks[i]):
                    continue
                direction, name = "in" if now else "out", classes[i]
                counts[zone.name][direction][name] = counts[zone.name][direction].get(name, 0) + 1
                events.append({"zone": zone.name, "direction": direction, "track_id": track_id, "class": name})
            if isinstance(zone, PolygonZone):
                inside: dict[str, int] = {}
                for name, now in zip(classes, states):
                    if now:
                        inside[name] = inside.get(name, 0) + 1
                counts[zone.name]["inside"] = inside
        return events

    def _sequence_counts(self, sequence: str) -> dict:
        """The (created on first use) counts of one sequence."""
        if sequence not in self._counts:
            self._counts[sequence] = {
                zone.name: {"in": {}, "out": {}, **({"inside": {}} if isinstance(zone, PolygonZone) else {})}
                for zone in self.zones
            }
        return self._counts[sequence]

    @property
    def counts(self) -> dict:
        """``{sequence: {zone name: {"in": {class name: n}, "out": {...}[, "inside": {...}]}}}`` so far."""
        return {sequence: {zone: {k: dict(v) for k, v in c.items()} for zone, c in zones.items()} for sequence, zones in self._counts.items()}

    def draw(self, canvas: np.ndarray, sequence: str) -> np.ndarray:
        """Draw every zone with its name, and its counts in ``sequence`` so far (``in 3 (2 circle, 1 star)  out 0``, ``inside`` for polygons) in a panel at the bottom left, on an (H, W, 3) uint8 BGR canvas, in place; returns it."""
        counts = self._sequence_counts(sequence)
        scale = max(canvas.shape[0] / 640, 0.45)
        height = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1] + 8
        bottom = canvas.shape[0] - 6 - height * (len(self.zones) - 1)  # the panel's first baseline
        for row, zone in enumerate(self.zones):
            zone.draw(canvas)
            x, y = zone.label_at()
            draw_label(canvas, zone.name, (max(x, 0), max(y, 0)), ZONE_COLOR, 1)
            text = f"{zone.name}: " + "  ".join(f"{kind} {by_class(n)}" for kind, n in counts[zone.name].items())
            origin = (6, bottom + row * height)
            cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, ZONE_COLOR, 1, cv2.LINE_AA)
        return canvas


def by_class(counts: dict[str, int]) -> str:
    """``{"circle": 2, "star": 1}`` → ``3 (2 circle, 1 star)``; ``{}`` → ``0``."""
    total = sum(counts.values())
    return f"{total} (" + ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) + ")" if total else "0"


class Trails:
    """The recent path of each track's mask centre, drawn as a fading line.

    Args:
        length: how many of the latest frames' centres each trail keeps (0 draws none).
    """

    def __init__(self, length: int = 30):
        self.length = length
        self._points: dict = {}  # (sequence, track id) → deque of its latest (x, y) centres
        self._frames: dict[str, int] = {}  # sequence → frames seen
        self._last_seen: dict[str, dict[int, int]] = {}  # sequence → {track id: frame it was last seen}

    def update(self, result: Results) -> None:
        """Add the mask centres of one frame's tracked Results (tracks unseen for ``length`` frames are forgotten)."""
        if result.track_ids is None or self.length <= 0:
            return
        sequence = sequence_of(result.path)
        frame = self._frames[sequence] = self._frames.get(sequence, 0) + 1
        seen = self._last_seen.setdefault(sequence, {})
        for track_id, mask in zip(result.track_ids, result.masks):
            centre = mask_centre(mask)
            if centre is not None:
                self._points.setdefault((sequence, int(track_id)), deque(maxlen=self.length)).append(centre)
                seen[int(track_id)] = frame
        for track_id in [t for t, last in seen.items() if frame - last > self.length]:
            del seen[track_id]
            self._points.pop((sequence, track_id), None)

    def draw(self, canvas: np.ndarray, result: Results) -> np.ndarray:
        """Draw the trails of ``result``'s tracks on an (H, W, 3) uint8 BGR canvas, in place; returns it."""
        if result.track_ids is None:
            return canvas
        sequence = sequence_of(result.path)
        for track_id, cls in zip(result.track_ids, result.classes):
            points = self._points.get((sequence, int(track_id)))
            if not points or len(points) < 2:
                continue
            line = np.round(np.array(points)).astype(np.int32)
            color = class_color(int(cls))
            for k in range(1, len(line)):
                thickness = max(1, round(3 * k / len(line)))  # thinner towards the oldest point
                cv2.line(canvas, tuple(line[k - 1]), tuple(line[k]), color, thickness, cv2.LINE_AA)
        return canvas


def parse_zone(text: str, kind: str, number: int = 1) -> PolygonZone | LineZone:
    """A zone from its text, as ``--zone`` and ``--line`` take it: ``"[name:]x,y x,y ..."`` in source pixels.

    Args:
        text: the points, space-separated ``x,y`` pairs, optionally after ``name:``.
        kind: ``"zone"`` (a polygon, 3 or more points) or ``"line"`` (2 points).
        number: names an unnamed one ``zone<number>`` / ``line<number>``.

    Raises:
        ValueError: naming what is wrong and what is expected.
    """
    name, _, points = text.rpartition(":") if ":" in text else ("", "", text)
    example = "0,160 480,160" if kind == "line" else "dock:0,0 200,0 200,120 0,120"
    try:
        xy = [tuple(float(v) for v in point.split(",")) for point in points.split()]
        if any(len(point) != 2 for point in xy):
            raise ValueError("every point is x,y")
        if kind == "line":
            if len(xy) != 2:
                raise ValueError(f"a line needs 2 points, got {len(xy)}")
            return LineZone(*xy, name=name or f"line{number}")
        return PolygonZone(xy, name=name or f"zone{number}")
    except (TypeError, ValueError) as exc:
        more = " x,y ..." if kind == "zone" else ""
        raise ValueError(f"{text!r}: {exc} (expected [name:]x,y x,y{more} in source pixels, e.g. {example!r})") from None
