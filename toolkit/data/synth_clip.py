"""A synthetic video with ground-truth track ids: the synthetic shapes moving, bouncing and occluding one another.

Each object keeps its class, shape, colour and depth for the whole clip and moves at a constant
velocity, bouncing off the frame edges; objects drawn later pass in front, so crossing objects
hide each other. The ground truth of a frame lists each object that is visible there (at least
``MIN_VISIBLE_PX`` px of its mask): its id, class and the box of its visible pixels, in
MOTChallenge's text layout. Same seed, same clip.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.synth import CLASS_NAMES, _background, _rasterize, _shape_polygon
from edgeseg.runtimes.errors import EdgesegError

MIN_VISIBLE_PX = 60
CLIP_NAME, GT_NAME = "clip.avi", "gt.txt"


@dataclass
class ClipFrame:
    """One frame and its ground truth.

    Attributes:
        image: (H, W, 3) uint8 BGR.
        ids: (N,) int track ids (from 1) of the visible objects.
        classes: (N,) int class ids.
        masks: (N, H, W) bool visible pixels.
        boxes: (N, 4) float xyxy of the visible pixels.
        visible: (N,) float, the fraction of each object's in-frame pixels that is visible.
    """

    image: np.ndarray
    ids: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    visible: np.ndarray


def render_clip(seed: int = 0, n_frames: int = 300, n_objects: int = 10, width: int = 480, height: int = 320) -> Iterator[ClipFrame]:
    """The clip's frames with their ground truth, one at a time.

    Args:
        seed: draws the background, the objects and their motion.
        n_frames: frames to render.
        n_objects: objects in the clip, each with its own id (1 … n_objects).
        width, height: frame size in px.
    """
    rng = np.random.default_rng([seed, 7])
    background = _background(rng, height, width)
    objects = []
    for track_id in range(1, n_objects + 1):
        cls = int(rng.integers(len(CLASS_NAMES)))
        diameter = float(rng.uniform(28, 60))
        outline = _shape_polygon(rng, cls, np.zeros(2), diameter)
        position = rng.uniform([diameter, diameter], [width - diameter, height - diameter])
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4.5)
        colour = np.clip(background.mean((0, 1)) + rng.choice([-1, 1], 3) * rng.uniform(60, 120, 3), 0, 255)
        objects.append([track_id, cls, outline, position, speed * np.array([np.cos(angle), np.sin(angle)]), colour])
    for _ in range(n_frames):
        image = background.copy()
        drawn = []
        for track_id, cls, outline, position, velocity, colour in objects:
            mask = _rasterize(outline + position, (height, width)).astype(bool)
            image[mask] = colour
            drawn = [(i, c, m & ~mask, a) for i, c, m, a in drawn] + [(track_id, cls, mask, max(int(mask.sum()), 1))]
        image += rng.normal(0, 3, image.shape).astype(np.float32)
        kept = [(i, c, m, a) for i, c, m, a in drawn if m.sum() >= MIN_VISIBLE_PX]
        masks = np.stack([m for _, _, m, _ in kept]) if kept else np.zeros((0, height, width), bool)
        yield ClipFrame(
            np.clip(np.round(image), 0, 255).astype(np.uint8),
            np.array([i for i, *_ in kept], dtype=np.int64),
            np.array([c for _, c, *_ in kept], dtype=np.int64),
            masks,
            np.array([_mask_box(m) for m in masks], dtype=np.float64).reshape(-1, 4),
            np.array([m.sum() / a for _, _, m, a in kept], dtype=np.float64),
        )
        for obj in objects:
            _move(obj, width, height)


def _mask_box(mask: np.ndarray) -> list[float]:
    """xyxy of a non-empty mask's pixels (the box edges, so a 1-px mask at x is [x, ., x + 1, .])."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _move(obj: list, width: int, height: int) -> None:
    """One frame of an object's motion, bouncing its centre off the frame edges (in place)."""
    position, velocity = obj[3], obj[4]
    position += velocity
    for axis, limit in ((0, width), (1, height)):
        if not 0 <= position[axis] <= limit:
            velocity[axis] = -velocity[axis]
            position[axis] = np.clip(position[axis], 0, limit)


def write_clip(out: str | Path, seed: int = 0, n_frames: int = 300, n_objects: int = 10, fps: float = 30.0) -> Path:
    """Write ``clip.avi`` (MJPG) and ``gt.txt`` (MOTChallenge: frame, id, x, y, w, h, 1, class, 1) into ``out``; return the clip path.

    Raises:
        EdgesegError: the video cannot be written there.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    video, lines = None, []
    try:
        for frame_index, frame in enumerate(render_clip(seed, n_frames, n_objects), start=1):
            if video is None:
                h, w = frame.image.shape[:2]
                video = cv2.VideoWriter(str(out / CLIP_NAME), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
                if not video.isOpened():
                    raise EdgesegError(f"{out / CLIP_NAME}: OpenCV cannot write an MJPG video there")
            video.write(frame.image)
            for track_id, cls, (x1, y1, x2, y2) in zip(frame.ids, frame.classes, frame.boxes):
                lines.append(f"{frame_index},{track_id},{x1:g},{y1:g},{x2 - x1:g},{y2 - y1:g},1,{cls},1\n")
    finally:
        if video is not None:
            video.release()
    (out / GT_NAME).write_text("".join(lines))
    return out / CLIP_NAME
