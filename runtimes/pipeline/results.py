"""``Results``: the one typed prediction every backend produces (numpy arrays in source px)."""

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from .polygons import masks_to_polygons
from .rle import rle_encode

# Ultralytics' 20-colour palette (RGB hex), stored as BGR: class c gets PALETTE[c % 20].
_HEX = (
    "FF3838 FF9D97 FF701F FFB21D CFD231 48F90A 92CC17 3DDB86 1A9334 00D4BB "
    "2C99A8 00C2FF 344593 6473FF 0018EC 8438FF 520085 CB38FF FF95C8 FF37C7"
).split()
PALETTE = tuple((int(h[4:6], 16), int(h[2:4], 16), int(h[0:2], 16)) for h in _HEX)


def _solid(shape: tuple[int, int, int], color: tuple[int, int, int]) -> np.ndarray:
    """An (H, W, 3) uint8 image of one BGR ``color`` (filled by OpenCV: ~20x faster than numpy's broadcast fill)."""
    image = np.empty(shape, np.uint8)
    cv2.rectangle(image, (0, 0), (shape[1], shape[0]), color, cv2.FILLED)
    return image


def class_color(cls: int) -> tuple[int, int, int]:
    """Fixed BGR colour of a class id."""
    return PALETTE[int(cls) % len(PALETTE)]


def draw_label(canvas: np.ndarray, text: str, corner: tuple[int, int], color, line: int) -> None:
    """Write ``text`` on a filled box in BGR ``color`` above (or, near the top edge, below) ``corner`` (x, y) of an (H, W, 3) uint8 canvas, in place.

    ``line`` is the box outline width in pixels; the text scale follows it.
    """
    scale, thickness = line / 3, max(line - 1, 1)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = corner
    above = y - th - 3 >= 0
    y2 = y - th - 3 if above else y + th + 3
    cv2.rectangle(canvas, (x, y), (x + tw, y2), color, -1, cv2.LINE_AA)
    luma = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luma > 160 else (255, 255, 255)
    baseline = y - 2 if above else y + th + 2
    cv2.putText(canvas, text, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thickness, cv2.LINE_AA)


@dataclass
class Results:
    """Detections and masks of one image, all in source px.

    Attributes:
        boxes: (N, 4) float32 xyxy in source px.
        scores: (N,) float32 confidences.
        classes: (N,) int64 class ids.
        masks: (N, H0, W0) bool masks at the source resolution.
        names: class id -> name.
        orig_shape: (H0, W0) of the source image.
        image: optional (H0, W0, 3) uint8 BGR source image.
        path: optional source path.
        speed: milliseconds per stage (``preprocess``, ``inference``, ``postprocess``), filled
            by the runtime.
        track_ids: (N,) int64 track ids from ``Runtime.track``, or None for untracked results.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    names: dict[int, str]
    orig_shape: tuple[int, int]
    image: np.ndarray | None = None
    path: str | None = None
    speed: dict[str, float] = field(default_factory=dict)
    track_ids: np.ndarray | None = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        self.masks = np.asarray(self.masks, dtype=bool).reshape(-1, *self.orig_shape)
        self.orig_shape = (int(self.orig_shape[0]), int(self.orig_shape[1]))
        n = len(self.boxes)
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
            if len(self.track_ids) != n:
                raise ValueError(f"Results fields disagree: {n} boxes, {len(self.track_ids)} track ids")
        if not len(self.scores) == len(self.classes) == len(self.masks) == n:
            raise ValueError(
                f"Results fields disagree: {n} boxes, {len(self.scores)} scores, "
                f"{len(self.classes)} classes, {len(self.masks)} masks"
            )

    def __len__(self) -> int:
        """Number of detections N."""
        return len(self.boxes)

    @cached_property
    def polygons(self) -> list[np.ndarray]:
        """N float32 (K, 2) x, y outlines in source px (largest outer contour; (0, 2) if empty)."""
        return masks_to_polygons(self.masks)

    def _name(self, cls: int) -> str:
        return self.names.get(int(cls), str(int(cls)))

    def subset(self, keep: np.ndarray) -> "Results":
        """The detections selected by ``keep`` ((N,) bool or indices), with the same image, path and speed."""
        return Results(
            self.boxes[keep], self.scores[keep], self.classes[keep], self.masks[keep], self.names, self.orig_shape,
            self.image, self.path, self.speed, None if self.track_ids is None else self.track_ids[keep],
        )  # fmt: skip

    def plot(
        self, boxes: bool = True, masks: bool = True, labels: bool = True, conf: bool = True, alpha: float = 0.5
    ) -> np.ndarray:
        """Draw the detections.

        Args:
            boxes: draw the boxes.
            masks: blend each mask in its class colour.
            labels: write "name" (plus " 0.87" with ``conf``) above each box, after "#id " for tracked results.
            conf: add the confidence to the labels.
            alpha: mask opacity in [0, 1].

        Returns:
            (H0, W0, 3) uint8 BGR copy of the source image (black if there is none) with the drawing.
        """
        h0, w0 = self.orig_shape
        canvas = np.zeros((h0, w0, 3), np.uint8) if self.image is None else self.image.copy()
        order = range(len(self) - 1, -1, -1)  # lowest score first, so the best ends on top
        if masks:
            for i in order:
                x, y, w, h = cv2.boundingRect(self.masks[i].view(np.uint8))
                if w == 0:
                    continue
                region = canvas[y : y + h, x : x + w]  # a view: OpenCV writes the tint into the canvas
                tinted = cv2.addWeighted(region, 1 - alpha, _solid(region.shape, class_color(self.classes[i])), alpha, 0)
                cv2.copyTo(tinted, self.masks[i, y : y + h, x : x + w].view(np.uint8), region)
        line = max(round((h0 + w0) / 2 * 0.003), 2)
        for i in order:
            color = class_color(self.classes[i])
            x1, y1, x2, y2 = (int(round(v)) for v in self.boxes[i])
            if boxes:
                cv2.rectangle(canvas, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
            if labels:
                text = self._name(self.classes[i]) + (f" {self.scores[i]:.2f}" if conf else "")
                if self.track_ids is not None:
                    text = f"#{self.track_ids[i]} {text}"
                draw_label(canvas, text, (x1, y1), color, line)
        return canvas

    def to_json(self, decimals: int = 5) -> str:
        """JSON list of detections: name, class, confidence, box{x1,y1,x2,y2} and segments{x,y}, source px; track_id when tracked."""
        items = []
        for i, polygon in enumerate(self.polygons):
            x1, y1, x2, y2 = (round(float(v), decimals) for v in self.boxes[i])
            items.append(
                {
                    "name": self._name(self.classes[i]),
                    "class": int(self.classes[i]),
                    "confidence": round(float(self.scores[i]), decimals),
                    "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                    "segments": {
                        "x": np.round(polygon[:, 0].astype(float), decimals).tolist(),
                        "y": np.round(polygon[:, 1].astype(float), decimals).tolist(),
                    },
                }
            )
            if self.track_ids is not None:
                items[-1]["track_id"] = int(self.track_ids[i])
        return json.dumps(items)

    def to_coco(self, image_id, category_ids=None) -> list[dict]:
        """COCO results entries, one per detection.

        Args:
            image_id: the COCO image id.
            category_ids: optional class id -> COCO category id (list or dict); default the class id.

        Returns:
            N dicts with image_id, category_id, bbox [x, y, w, h] in source px, score and
            segmentation as compressed RLE ``{"size": [H0, W0], "counts": str}``.
        """
        entries = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            cls = int(self.classes[i])
            entries.append(
                {
                    "image_id": image_id,
                    "category_id": cls if category_ids is None else category_ids[cls],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(float(self.scores[i]), 5),
                    "segmentation": rle_encode(self.masks[i]),
                }
            )
        return entries

    def save_txt(self, path: str | Path, save_conf: bool = False) -> None:
        """Write YOLO-seg label lines ``cls x1 y1 x2 y2 ... [conf] [track id]``, normalised to the source size.

        One polygon per detection (empty masks are skipped), 6 decimals; the file is overwritten.
        Tracked results end each line with the integer track id.
        """
        h0, w0 = self.orig_shape
        lines = []
        for i, polygon in enumerate(self.polygons):
            if not len(polygon):
                continue
            coords = (polygon / np.array([w0, h0], dtype=np.float32)).reshape(-1)
            values = " ".join(f"{v:.6f}" for v in coords)
            line = f"{int(self.classes[i])} {values}" + (f" {self.scores[i]:.6f}" if save_conf else "")
            lines.append(line + ("" if self.track_ids is None else f" {int(self.track_ids[i])}"))
        Path(path).write_text("".join(line + "\n" for line in lines))
