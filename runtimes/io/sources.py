"""Sources: what ``predict`` reads (images, folders, globs, videos, arrays, live streams) and the images of a dataset split.

``resolve_source`` checks a predict source before anything runs; ``SourceFrames`` decodes it
lazily, skipping and counting unreadable files, and reads live sources through
``edgeseg.runtimes.io.live``; ``split_images`` is the one way any caller
(calibration, export verification, bench) takes "the first N readable images of a split".
"""

import glob
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.data_config import IMG_SUFFIXES, img_paths, load_data_config
from edgeseg.runtimes.io.images import MAX_IMAGE_PIXELS, ImageReadError, decode_image, read_image
from edgeseg.runtimes.io.live import LiveFrames, LiveOptions, is_live, live_sources

LOGGER = logging.getLogger("edgeseg")

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm"})


def sequence_of(path: str | None) -> str:
    """The sequence a Results' ``path`` belongs to: its video or live source (``"<source>#<frame index>"``), else ``"images"``."""
    head, _, frame = (path or "").rpartition("#")
    return head if head and frame.isdigit() else "images"


def to_bgr(array: np.ndarray) -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA uint8 array as (H, W, 3) uint8 BGR.

    Raises:
        EdgesegError: another dtype or shape.
    """
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise EdgesegError(
            f"image array must be uint8 (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA; got {array.dtype} {array.shape}"
        )
    if array.ndim == 2 or array.shape[2] == 1:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(array)


def _media_files(paths) -> list[Path]:
    """The entries among ``paths`` with an image or video suffix, sorted.

    Entries that cannot be read (dangling or looping links, folders named ``x.jpg``) are kept:
    predict skips each one with a warning naming it, and counts it.
    """
    return sorted(p for p in map(Path, paths) if p.suffix.lower() in IMG_SUFFIXES | VIDEO_SUFFIXES)


def _file_item(path: Path) -> tuple[str, object]:
    """("video", path) for a video suffix, else ("image", path)."""
    return ("video" if path.suffix.lower() in VIDEO_SUFFIXES else "image", path)


def resolve_source(source) -> list[tuple[str, object]]:
    """Expand a predict source into ``("image", Path)``, ``("video", Path)``, ``("array", BGR array)`` and ``("live", [names])`` items.

    Args:
        source: an image or video path, a folder (its images and videos, sorted, not recursive),
            a glob pattern, an (H, W[, C]) uint8 array (see ``to_bgr``), a live source (a webcam
            index, an ``rtsp://``, ``rtmp://``, ``http(s)://`` URL or a ``.streams`` file; see
            ``edgeseg.runtimes.io.live``), or a list of these. The live sources of a list are read
            together, at the place of the first one.

    Returns:
        The items in order. Folder and pattern entries are listed by name only; one that turns
        out unreadable is skipped and counted when predict reaches it. Live sources are opened
        only when read.

    Raises:
        EdgesegError: a missing path, a path that is neither a file nor a folder, an unlistable
            folder, a pattern or folder without images/videos, a video file that cannot be
            opened, a bad ``.streams`` file, an empty list or an unsupported type.
    """
    if isinstance(source, np.ndarray):
        return [("array", to_bgr(source))]
    if isinstance(source, (list, tuple)):
        if not source:
            raise EdgesegError("empty source list")
        items = [item for s in source for item in resolve_source(s)]
        if sum(kind == "live" for kind, _ in items) > 1:
            first = next(i for i, (kind, _) in enumerate(items) if kind == "live")
            live = [name for kind, names in items if kind == "live" for name in names]
            rest = [item for item in items if item[0] != "live"]
            items = rest[:first] + [("live", live)] + rest[first:]
        return items
    if is_live(source):
        return [("live", live_sources(source))]
    if not isinstance(source, (str, Path)):
        raise EdgesegError(f"unsupported source type {type(source).__name__} (give a path, a glob, an array or a list)")
    path = Path(source)
    kind = _path_kind(path)
    if kind == "dir":
        files = _media_files(_folder_entries(path))
        if not files:
            raise EdgesegError(f"{path}: no images or videos in this folder")
        return [_file_item(f) for f in files]
    if kind == "other":
        raise EdgesegError(f"{path}: not a regular file or a folder")
    if kind == "file":
        if path.suffix.lower() in VIDEO_SUFFIXES:
            capture = cv2.VideoCapture(str(path))
            opened = capture.isOpened()
            capture.release()
            if not opened:
                raise EdgesegError(f"{path}: cannot open video")
        return [_file_item(path)]
    if any(c in str(source) for c in "*?["):
        files = _media_files(glob.glob(str(source), recursive=True))
        if not files:
            raise EdgesegError(f"{source}: no images or videos match this pattern")
        return [_file_item(f) for f in files]
    raise EdgesegError(f"{source}: source not found")


def _path_kind(path: Path) -> str:
    """What ``path`` is, links followed: ``"dir"``, ``"file"`` (regular), ``"other"`` (FIFO, device...) or ``""`` (none)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return ""
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _folder_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` (not recursive).

    Raises:
        EdgesegError: the folder cannot be listed.
    """
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise EdgesegError(f"{folder}: folder cannot be read ({e.strerror or e})") from None


class SourceFrames:
    """``(path, (H, W, 3) uint8 BGR image)`` pairs over ``resolve_source`` items, decoded lazily.

    Arrays yield path None, video frames ``"video.mp4#<frame index>"``, live frames
    ``"<source>#<frame index>"``. Unreadable files, videos that are not regular files, declare
    frames over MAX_IMAGE_PIXELS or give no frame are skipped with a warning naming each, and
    counted in ``skipped``; a live source that ends (lost, or never opened) is logged and listed
    in ``ended``.

    Args:
        items: from ``resolve_source``.
        live: LiveOptions for live sources; its ``vid_stride`` applies to video files too.

    Attributes:
        skipped: files skipped so far.
        ended: one message per live source that ended by itself.
        dropped: stale live frames dropped (``LiveOptions.stream_buffer=False``).
    """

    def __init__(self, items: list[tuple[str, object]], live: LiveOptions | None = None):
        self.items = items
        self.live = live or LiveOptions()
        self.skipped = self.dropped = 0
        self.ended: list[str] = []

    def __iter__(self):
        for kind, value in self.items:
            if kind == "array":
                yield None, value
            elif kind == "live":
                frames = LiveFrames(value, self.live)
                try:
                    yield from frames
                finally:
                    self.ended += frames.ended
                    self.dropped += frames.dropped
            elif kind == "image":
                try:
                    image = decode_image(value)
                except ImageReadError as e:
                    self._skip(value, str(e))
                    continue
                yield str(value), image
            else:
                yield from self._video_frames(value)

    def _skip(self, path, reason: str) -> None:
        """Warn about and count one skipped file."""
        self.skipped += 1
        LOGGER.warning(f"{path}: skipped, {reason}")

    def _video_frames(self, path: Path):
        """Generator of ("video#<index>", frame) over one video, holding one frame at a time."""
        if _path_kind(path) != "file":
            self._skip(path, "not a regular file")
            return
        capture = cv2.VideoCapture(str(path))
        index = 0
        try:
            w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w * h > MAX_IMAGE_PIXELS:
                self._skip(path, f"frames of {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS:,}-pixel limit")
                return
            stride = self.live.vid_stride
            while capture.isOpened() and capture.grab():
                if index % stride == 0:
                    ok, frame = capture.retrieve()
                    if not ok:
                        break
                    yield f"{path}#{index}", frame
                index += 1
        finally:
            capture.release()
        if index == 0:
            self._skip(path, "no readable video frames")


@dataclass
class SplitImages:
    """The first readable images of a dataset split.

    Attributes:
        paths: their files, in the split's sorted order.
        images: the (H, W, 3) uint8 BGR images, same order.
        yaml_file: the data YAML they come from.
        skipped: unreadable files passed over (each logged).
    """

    paths: list[str]
    images: list[np.ndarray]
    yaml_file: str
    skipped: int


def split_images(data, split: str, limit: int) -> SplitImages:
    """The first ``limit`` readable images of ``split`` (``train``, ``val``, ``test``) of a data YAML.

    Args:
        data: a data YAML path, or a config from ``load_data_config``.
        split: the split's key.
        limit: how many images at most (fewer when the split has fewer readable ones).

    Raises:
        EdgesegError: an unusable YAML, a missing split, or a split without a readable image.
    """
    cfg = data if isinstance(data, dict) else load_data_config(data)
    where = cfg.get("yaml_file", "data config")
    if cfg.get(split) is None:
        raise EdgesegError(f"{where}: no '{split}' split")
    paths, images, skipped = [], [], 0
    for path in img_paths(cfg[split], cfg["path"]):
        if len(images) == limit:
            break
        image = read_image(path)
        if image is None:
            skipped += 1
            continue
        paths.append(str(path))
        images.append(image)
    if skipped:
        LOGGER.warning(f"{where}: {skipped} unreadable {split} image(s) skipped")
    if not images:
        raise EdgesegError(f"{where}: no readable {split} images")
    return SplitImages(paths, images, str(where), skipped)
