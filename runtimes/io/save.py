"""Save predictions: annotated images and videos, YOLO-seg label files and COCO results JSON.

The one writer of predict outputs, used by ``edgeseg predict`` and by the Python API::

    from edgeseg.runtimes import load
    from edgeseg.runtimes.io.save import save_results

    folder = save_results(load("best.onnx").predict("images/"), "runs/segment/predict", txt=True, coco=True)

Layout of a run folder (``save_dir``, or ``save_dir2``, ``save_dir3``, … when it exists; created
on the first write, so nothing is created when there is nothing to save):

- ``<name>``: each annotated image, under its source file name (``Results.plot``).
- ``<stem>.mp4``: each annotated video (mp4v), at the source video's frame rate; a live
  source's video is named after its URL (scheme and credentials left out, other characters
  than letters, digits, ``.`` and ``-`` made ``_``) or ``webcam0``, at DEFAULT_FPS.
- ``labels/<stem>.txt``: YOLO-seg label lines (``Results.save_txt``); a video frame's file is
  ``labels/<stem>_<frame index>.txt``.
- ``predictions.json``: COCO results (``Results.to_coco``) of all images, written atomically on
  ``close``.

Results without a path (numpy array sources, ``path=None``) are named ``image0.jpg``,
``image1.jpg``, … in the order they reach the saver (counting only those results), so their
labels are ``labels/image0.txt``, … and their COCO ``image_id`` is ``"image0"``, ….
Two sources with the same file name (from different folders) write the same files; the later wins.

Imports nothing of edgeseg outside ``edgeseg.runtimes``, and never torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.files import atomic_write_text, ensure_folder
from edgeseg.runtimes.io.live import is_live_name
from edgeseg.runtimes.io.paths import increment_path
from edgeseg.runtimes.io.sources import VIDEO_SUFFIXES
from edgeseg.runtimes.pipeline.results import Results

__all__ = ["ResultSaver", "save_results", "DEFAULT_FPS"]

DEFAULT_FPS = 30.0  # frames per second of a saved video when the source does not report a usable rate
COCO_FILE = "predictions.json"
LABELS_FOLDER = "labels"


def _coco_image_id(stem: str) -> int | str:
    """COCO ``image_id`` of a file stem: the number for a numeric stem (``"000123"`` → 123), else the stem."""
    return int(stem) if stem.isdecimal() else stem


class ResultSaver:
    """Write ``Results`` into one run folder, one at a time, as a context manager.

    ::

        with ResultSaver("runs/segment/predict", txt=True) as saver:
            for result in runtime.predict("clip.mp4"):
                saver.add(result)
        print(saver.folder)  # runs/segment/predict (or predict2, … if it existed), None if nothing was written

    Args:
        save_dir: the run folder to create; when it exists, the first free ``<save_dir>2``,
            ``<save_dir>3``, … (``edgeseg.runtimes.io.paths.increment_path``) is created instead, on
            the first write.
        images: write annotated images (source file name) and videos (``<stem>.mp4``).
        txt: write YOLO-seg ``labels/<stem>.txt`` (class id, then x y pairs normalised to [0, 1]
            by the source width and height; one line per detection with a non-empty mask).
        coco: collect COCO results and write ``predictions.json`` on ``close``.
        show_labels: draw class names on the annotated images.
        show_conf: add confidences to the drawn labels.
        exist_ok: write into ``save_dir`` itself even if it exists (files of the same name are
            replaced).
        annotate: called as ``annotate(result, image)`` with each annotated (H, W, 3) uint8 BGR
            image before it is written, to draw more on it (``edgeseg track`` draws trails and
            counting zones); returns the image to write.

    Attributes:
        folder: the run folder (``Path``) once something was written, else None.
    """

    def __init__(
        self,
        save_dir: str | Path,
        *,
        images: bool = True,
        txt: bool = False,
        coco: bool = False,
        show_labels: bool = True,
        show_conf: bool = True,
        exist_ok: bool = False,
        annotate: Callable[[Results, np.ndarray], np.ndarray] | None = None,
    ):
        self.save_dir = Path(save_dir)
        self.annotate = annotate
        self.images, self.txt, self.coco = images, txt, coco
        self.show_labels, self.show_conf = show_labels, show_conf
        self.exist_ok = exist_ok
        self.folder: Path | None = None
        self._entries: list[dict] = []
        self._arrays = 0  # results without a path seen so far
        self._writers: dict = {}  # source video or live source → its open cv2.VideoWriter

    def __enter__(self) -> ResultSaver:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add(self, result: Results) -> None:
        """Save one ``Results``: an image, a video frame (path ``"<video>#<frame index>"``) or an array.

        Frames of one video must arrive in order and together; each new video (or a frame index
        0) starts a new ``<stem>.mp4``. Frames of several live sources may arrive interleaved.

        Raises:
            EdgesegError: ``result`` is not a Results, or a file or folder cannot be written (the
                message names it).
        """
        if not isinstance(result, Results):
            raise EdgesegError(f"ResultSaver.add expects a Results, got {type(result).__name__}")
        if not (self.images or self.txt or self.coco):
            return
        if self.folder is None:
            self.folder = increment_path(self.save_dir, exist_ok=self.exist_ok)
        if result.path:
            video, _, frame = result.path.rpartition("#")
            is_frame = (Path(video).suffix.lower() in VIDEO_SUFFIXES or is_live_name(video)) and frame.isdecimal()
            name = Path(result.path).name
            stem = f"{_video_stem(video)}_{frame}" if is_frame else Path(result.path).stem
        else:
            video, frame, is_frame = "", "", False
            name = f"image{self._arrays}.jpg"
            stem = Path(name).stem
            self._arrays += 1
        if self.images:
            plotted = result.plot(labels=self.show_labels, conf=self.show_conf)
            if self.annotate is not None:
                plotted = self.annotate(result, plotted)
            if is_frame:
                self._write_frame(video, int(frame), plotted)
            else:
                _imwrite(self.folder / name, plotted)
        if self.txt:
            labels = ensure_folder(self.folder / LABELS_FOLDER) / f"{stem}.txt"
            try:
                result.save_txt(labels)
            except OSError as exc:
                raise EdgesegError(f"{labels}: could not write the label file ({exc.strerror or exc})") from None
        if self.coco:
            self._entries.extend(result.to_coco(_coco_image_id(stem)))

    def _write_frame(self, video: str, index: int, frame: np.ndarray) -> None:
        """Append an (H, W, 3) uint8 BGR frame to ``<stem>.mp4``, opening a writer at the source fps for a new video.

        A new video file finishes the previous video files' writers (live sources' stay open).

        Raises:
            EdgesegError: the video file cannot be opened for writing.
        """
        live = is_live_name(video)
        writer = self._writers.get(video)
        if writer is None or index == 0:
            self._close_videos(lambda name: name == video or not (live or is_live_name(name)))
            fps = DEFAULT_FPS
            if not live:
                capture = cv2.VideoCapture(video)
                fps = capture.get(cv2.CAP_PROP_FPS)
                capture.release()
                fps = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
            h, w = frame.shape[:2]
            out = self.folder / f"{_video_stem(video)}.mp4"
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            if not writer.isOpened():
                raise EdgesegError(f"{out}: could not open the video file for writing")
            self._writers[video] = writer
        writer.write(frame)

    def _close_videos(self, which=lambda name: True) -> None:
        """Finish the open video files whose source ``which(name)`` selects (all by default)."""
        for name in [name for name in self._writers if which(name)]:
            self._writers.pop(name).release()

    def close(self) -> Path | None:
        """Finish the open video and write ``predictions.json`` (atomically; ``[]`` when there were no detections).

        Safe to call more than once.

        Returns:
            The run folder, or None when nothing was written.

        Raises:
            EdgesegError: ``predictions.json`` cannot be written (the message names it).
        """
        self._close_videos()
        if self.coco and self.folder is not None:
            path = self.folder / COCO_FILE
            try:
                atomic_write_text(path, json.dumps(self._entries))
            except OSError as exc:
                raise EdgesegError(f"{path}: could not write the COCO results ({exc.strerror or exc})") from None
        return self.folder


def save_results(results: Iterable[Results] | Results, save_dir: str | Path, **options) -> Path | None:
    """Save every ``Results`` of an iterable (e.g. ``Runtime.predict``'s generator) into one run folder.

    The iterable is consumed one result at a time, so a video never has to fit in memory. See
    the module docstring for the layout, and ``ResultSaver`` for the arguments.

    Args:
        results: Results (or one Results), in source order; arrays (``path=None``) are saved as
            ``image0.jpg``, ``image1.jpg``, … in order.
        save_dir: the run folder; ``<save_dir>2``, ``<save_dir>3``, … when it exists (unless ``exist_ok``).
        options: ``ResultSaver``'s keyword arguments: ``images`` (default True), ``txt``,
            ``coco``, ``show_labels``, ``show_conf``, ``exist_ok``, ``annotate``.

    Returns:
        The run folder written, or None when nothing was (no results, or every output off).

    Raises:
        EdgesegError: a file or folder cannot be written, or an item is not a Results.
    """
    if isinstance(results, Results):
        results = [results]
    saver = ResultSaver(save_dir, **options)
    with saver:
        for result in results:
            saver.add(result)
    return saver.folder


def _video_stem(video: str) -> str:
    """The file stem of a video's annotated copy: the file's stem, or a live source's name made file-safe."""
    if not is_live_name(video):
        return Path(video).stem
    address = re.sub(r"^[a-z]+://([^/@]*@)?", "", video, flags=re.IGNORECASE)
    return re.sub(r"[^\w.-]+", "_", address).strip("_") or "stream"


def _imwrite(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 BGR image with OpenCV, in the format of the file suffix.

    Raises:
        EdgesegError: the image cannot be encoded or written (the message names the file).
    """
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error:
        ok = False
    if not ok:
        raise EdgesegError(f"{path}: could not write the annotated image")
