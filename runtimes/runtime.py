"""``Runtime``: one backend plus the one pipeline used by predict and val for every format.

``edgeseg.runtimes.pipeline.loop``: letterbox (to the input size) → ``Backend.infer`` → confidence filter →
NMS → mask decode → scale back to the source image → ``Results``. The ``.pt`` checkpoint goes through the same
path, so formats differ only by their backend (docs/ARCHITECTURE.md, "Output contract").
"""

import logging
import math

import numpy as np

from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.metrics import SegmentMetrics
from edgeseg.runtimes.evaluation.validate import VAL_CONF, VAL_IOU, VAL_MAX_DET, evaluate, split_labels
from edgeseg.runtimes.io.data_config import load_data_config
from edgeseg.runtimes.io.live import LiveOptions
from edgeseg.runtimes.io.sources import SourceFrames, resolve_source, sequence_of
from edgeseg.runtimes.meta.limits import MAX_IMGSZ
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.loop import predict_batches

LOGGER = logging.getLogger("edgeseg")


def _hw(imgsz) -> tuple[int, int]:
    """An int or (h, w) size as an (h, w) tuple of 1 to MAX_IMGSZ pixels.

    Raises:
        EdgesegError: another type, or a side outside 1..MAX_IMGSZ.
    """
    hw = (imgsz, imgsz) if isinstance(imgsz, (int, np.integer)) else tuple(imgsz) if isinstance(imgsz, (tuple, list)) else ()
    if len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and 0 < v <= MAX_IMGSZ for v in hw):
        raise EdgesegError(f"imgsz must be an int or (height, width) of 1 to {MAX_IMGSZ} pixels, got {imgsz!r}")
    return int(hw[0]), int(hw[1])


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    """Raise EdgesegError unless 0 <= conf <= 1, 0 <= iou <= 1 and max_det >= 1."""
    for name, value in (("conf", conf), ("iou", iou)):
        if not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
            raise EdgesegError(f"{name} must be a number from 0 to 1, got {value!r}")
    if not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise EdgesegError(f"max_det must be a positive integer, got {max_det!r}")


class Runtime:
    """A loaded model ready for ``predict`` and ``val``.

    Args:
        backend: the loaded artifact (``edgeseg.runtimes.load`` picks it from the path).

    Attributes:
        backend: the Backend.
        last_skipped: unreadable files (or videos without frames) skipped by the last ``predict``.
        last_ended: the last ``predict``'s live sources that ended by themselves (lost or never
            opened): one message each.
        last_dropped: stale live frames the last ``predict`` dropped (``stream_buffer=False``).
        last_tracks: after ``track``, ``{sequence: [track summaries]}`` (``Track.summary``): one
            entry per video (its path) and ``"images"`` for the still images and arrays.
    """

    def __init__(self, backend: Backend):
        self.backend = backend
        self.last_skipped = self.last_dropped = 0
        self.last_ended: list[str] = []
        self.last_tracks: dict[str, list[dict]] = {}

    @property
    def meta(self) -> ModelMeta:
        """The artifact's ModelMeta."""
        return self.backend.meta

    @property
    def names(self) -> dict[int, str]:
        """``{class id: name}``."""
        return self.backend.meta.names

    def select_branch(self, branch: str) -> "Runtime":
        """Pick the head branch that predict, val and track run: ``one2many`` (NMS) or ``one2one`` (top-k, no NMS).

        Only a YOLO26 ``.pt`` has both; an exported artifact runs the one it was exported with.

        Returns:
            This Runtime.

        Raises:
            EdgesegError: a branch this model cannot run.
        """
        self.backend.select_branch(branch)
        return self

    def input_shape(self, imgsz=None) -> tuple[int, int]:
        """The (H, W) model input for a requested size.

        A static artifact runs at its own size (a different ``imgsz`` is an error); a dynamic one
        at ``imgsz`` (default: the metadata's), rounded up to a multiple of the stride.
        """
        meta = self.meta
        if not meta.dynamic:
            if imgsz is not None and _hw(imgsz) != meta.imgsz:
                raise EdgesegError(
                    f"{self.backend.path}: exported for a fixed {meta.imgsz[0]}x{meta.imgsz[1]} input; "
                    f"imgsz={imgsz} needs an export at that size or a dynamic one"
                )
            return meta.imgsz
        h, w = _hw(imgsz) if imgsz is not None else meta.imgsz
        shape = (math.ceil(h / meta.stride) * meta.stride, math.ceil(w / meta.stride) * meta.stride)
        if shape != (h, w):
            LOGGER.warning(f"imgsz {h}x{w} is not a multiple of stride {meta.stride}; using {shape[0]}x{shape[1]}")
        return shape

    def warmup(self, imgsz=None) -> None:
        """Run one blank batch, so the first real call does not pay for lazy initialisation."""
        h, w = self.input_shape(imgsz)
        self.backend.infer(np.zeros((max(self.meta.batch, 1), 3, h, w), np.float32))

    def predict(
        self,
        source,
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz=None,
        max_det: int = 300,
        classes=None,
        agnostic: bool = False,
        retina_masks: bool = False,
        batch: int = 1,
        stream: bool = True,
        vid_stride: int = 1,
        stream_buffer: bool = False,
        reconnect: int = 3,
        pipeline: bool = True,
        rect: bool = False,
    ):
        """Segment images, folders, globs, videos, arrays, live streams or a list of these.

        The source is checked before anything runs (missing paths, unopenable video files raise
        here); unreadable files inside it are skipped with a warning naming each, counted in
        ``last_skipped``. A live source that is lost is reopened up to ``reconnect`` times, then
        ends with a warning (kept in ``last_ended``) and the results so far.

        Args:
            source: see ``resolve_source``; arrays are (H, W, 3) BGR uint8 (gray and BGRA are
                converted); live sources: a webcam index, an rtsp/rtmp/http(s) URL, a ``.streams`` file.
            conf, iou, max_det, classes, agnostic: see ``postprocess.non_max_suppression``.
            imgsz: input size, int or (h, w); see ``input_shape``.
            retina_masks: see ``postprocess.process_masks``.
            batch: images per inference call when the batch is dynamic (a static-batch artifact
                uses its own batch size).
            stream: return a generator (True) or a list.
            vid_stride: take every ``vid_stride``-th frame of videos and streams.
            stream_buffer: process every frame of a live source (True) or only the newest one
                when the model is slower than the source (False; dropped frames are counted in
                ``last_dropped``).
            reconnect: attempts to reopen a lost live source, ``edgeseg.runtimes.io.live.LiveOptions``.
            pipeline: decode + letterbox, inference (two frames at a time where the backend
                allows concurrent calls, ``Backend.concurrent``) and post-processing on threads
                of their own, so they overlap with each other and with the caller's work on the
                results (``edgeseg.runtimes.pipeline.loop.predict_batches``), with the engine's
                settings for overlapping work (``Backend.stream_infer``); False does one step at a
                time with its lowest-latency settings, and so does a source of one image or array,
                whatever ``pipeline`` says. The results are the same either way; a live source's
                frames wait a few batches longer in the pipeline.
            rect: a dynamic model (a ``.pt``, a dynamic export) runs each image on the smallest
                input that holds it, each side padded only to a multiple of the stride (as
                Ultralytics' ``.pt`` predict does; fewer pixels, so faster) instead of on the
                square ``imgsz`` every static export uses. A batch of images that need different
                inputs keeps ``imgsz``.

        Returns:
            Results per image or video frame, in source order, with ``image`` (H0, W0, 3) BGR,
            ``path`` (file path, ``"video.mp4#<frame index>"`` for frames, ``"<url>#<frame index>"``
            or ``"webcam0#<frame index>"`` for live frames, None for arrays) and ``speed`` (ms per
            image for preprocess, inference, postprocess).

        Raises:
            EdgesegError: a bad source or option, or (while iterating) a source with nothing readable.
        """
        if batch < 1:
            raise EdgesegError(f"batch must be >= 1, got {batch}")
        if rect and not self.meta.dynamic:
            raise EdgesegError(
                f"{self.backend.path}: rect needs a dynamic model; this one is exported for a fixed "
                f"{self.meta.imgsz[0]}x{self.meta.imgsz[1]} input"
            )
        live = LiveOptions(stream_buffer=stream_buffer, reconnect=reconnect, vid_stride=vid_stride)
        check_thresholds(conf, iou, max_det)
        self._warn_end2end(conf, iou, max_det, agnostic)
        shape = self.input_shape(imgsz)
        items = resolve_source(source)
        pipeline = pipeline and not (len(items) == 1 and items[0][0] in ("image", "array"))  # one frame: nothing to overlap
        size = batch if self.backend.dynamic_batch else self.meta.batch
        options = dict(conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic, retina_masks=retina_masks)
        options.update(pipeline=pipeline, selection=self.meta.selection, rect_stride=self.meta.stride if rect else None)
        results = self._stream(items, live, shape, size, options)
        return results if stream else list(results)

    def track(self, source, tracker=None, conf: float = 0.1, stream: bool = True, **options):
        """Segment and track objects through videos and image sequences (``edgeseg.runtimes.tracking``).

        Each video in ``source`` gets its own tracker; still images and arrays, in source order,
        form one sequence. Results keep only the detections that belong to a confirmed track, with
        their ``track_ids``; a track's mask is its detection's mask.

        Args:
            source: as ``predict``.
            tracker: a TrackerSettings, a tracker YAML path, or None for the defaults.
            conf: the lowest score kept; the default 0.1 lets weak detections keep their tracks
                (the tracker's ``low_score``).
            stream: return a generator (True) or a list.
            options: ``predict``'s other keyword arguments (``iou``, ``imgsz``, ``max_det``,
                ``classes``, ``agnostic``, ``retina_masks``, ``batch``, ``vid_stride``,
                ``stream_buffer``, ``reconnect``, ``pipeline``, ``rect``), with its defaults.

        Returns:
            Results per frame, in source order, with ``track_ids``; ``last_tracks`` is set when
            the iteration ends (or the generator is closed).

        Raises:
            EdgesegError: as ``predict``, or unreadable tracker settings.
        """
        from edgeseg.runtimes.tracking import TrackerSettings

        if tracker is None or isinstance(tracker, TrackerSettings):
            settings = tracker or TrackerSettings()
        else:
            settings = TrackerSettings.from_yaml(tracker)
        detections = self.predict(source, conf=conf, stream=True, **options)
        results = self._tracked(detections, settings)
        return results if stream else list(results)

    def _tracked(self, detections, settings):
        """``detections`` (Results per frame) with track ids, one ByteTracker per sequence; fills ``last_tracks``."""
        from edgeseg.runtimes.tracking import ByteTracker

        self.last_tracks = {}
        trackers: dict[str, ByteTracker] = {}
        try:
            for result in detections:
                sequence = sequence_of(result.path)
                if sequence not in trackers:
                    trackers[sequence] = ByteTracker(settings)
                ids = trackers[sequence].update(result.boxes, result.scores, result.classes, result.masks)
                result.track_ids = ids
                yield result if (ids >= 0).all() else result.subset(ids >= 0)
        finally:
            self.last_tracks = {sequence: tracker.summaries() for sequence, tracker in trackers.items()}

    def _warn_end2end(self, conf: float, iou: float, max_det: int, agnostic: bool = False) -> None:
        """Log which asked-for settings an end-to-end artifact cannot honour: its graph did NMS or top-k with its own."""
        nms = self.meta.nms
        if self.meta.topk and max_det > self.meta.topk:
            LOGGER.warning(f"{self.backend.path}: this end-to-end graph reports at most {self.meta.topk} detections, not max_det {max_det}")
        if not nms:
            return
        limits = []
        if conf < nms["conf"]:
            limits.append(f"conf {conf:g} (it reports no score <= {nms['conf']:g})")
        if iou != nms["iou"] or agnostic:
            limits.append(f"iou {iou:g}{' agnostic' if agnostic else ''} (its graph ran class-aware NMS at {nms['iou']:g} first)")
        if max_det > nms["max_det"]:
            limits.append(f"max_det {max_det} (it reports at most {nms['max_det']})")
        if limits:
            LOGGER.warning(
                f"{self.backend.path}: NMS is in this end-to-end graph, so the results differ from host NMS at "
                f"{', '.join(limits)}; re-export with --end2end --conf/--iou/--max-det to change them"
            )

    def _stream(self, items, live: LiveOptions, shape: tuple[int, int], size: int, options: dict):
        """Generator of Results over ``items`` through the one batch loop, ``size`` images per inference call."""
        frames = SourceFrames(items, live)
        self.last_skipped = self.last_dropped = seen = 0
        self.last_ended = frames.ended
        try:
            concurrency = 2 if self.backend.concurrent else 1
            infer = self.backend.stream_infer() if options["pipeline"] else self.backend.infer
            for results in predict_batches(infer, frames, shape, size, self.meta.nc, self.names, concurrency=concurrency, **options):
                self.last_skipped = frames.skipped
                seen += len(results)
                yield from results
        finally:
            self.last_dropped = frames.dropped
        self.last_skipped = frames.skipped
        if self.last_skipped:
            LOGGER.warning(f"{self.last_skipped} unreadable source file(s) skipped")
        if not seen:
            raise EdgesegError(f"nothing readable in the source ({self.last_skipped} skipped)")

    def val(
        self,
        data,
        split: str = "val",
        imgsz=None,
        batch: int = 16,
        conf: float = VAL_CONF,
        iou: float = VAL_IOU,
        max_det: int = VAL_MAX_DET,
        progress: bool = True,
        multi_label: bool | None = None,
    ) -> SegmentMetrics:
        """Box and mask metrics on a YOLO-seg split, through ``edgeseg.runtimes.evaluation.validate.evaluate``.

        Args:
            data: a data YAML path or a config from ``load_data_config``.
            split: ``train``, ``val`` or ``test``.
            imgsz: square input size (see ``input_shape``).
            batch: images per inference call (a static-batch artifact uses its own).
            conf, iou, max_det: post-processing thresholds.
            progress: show a progress bar.
            multi_label: NMS keeps a candidate for every class an anchor scores above ``conf``, as
                Ultralytics' val does (``evaluate``); None: True, except for an artifact with NMS
                in its graph, which keeps each anchor's best class only.

        Raises:
            EdgesegError: the dataset's class count differs from the model's, the split is
                missing or empty, or the model input is not square.
        """
        check_thresholds(conf, iou, max_det)
        self._warn_end2end(conf, iou, max_det)
        cfg = data if isinstance(data, dict) else load_data_config(data)
        where = cfg.get("yaml_file", "data config")
        if cfg["nc"] != self.meta.nc:
            raise EdgesegError(f"{where}: the dataset has {cfg['nc']} classes, {self.backend.path} has {self.meta.nc}")
        if cfg["names"] != self.names and any(name != str(i) for i, name in self.names.items()):
            LOGGER.warning(f"{where}: class names differ from the model's {list(self.names.values())}")
        h, w = self.input_shape(imgsz)
        if h != w:
            raise EdgesegError(f"{self.backend.path}: val needs a square input, this model's is {h}x{w}")
        return evaluate(
            self.backend.infer,
            split_labels(cfg, split),
            cfg["nc"],
            h,
            batch=batch if self.backend.dynamic_batch else self.meta.batch,
            conf=conf,
            iou=iou,
            max_det=max_det,
            progress=progress,
            desc=split,
            selection=self.meta.selection,
            multi_label=not self.meta.nms if multi_label is None else multi_label,
        )

    def __repr__(self) -> str:
        meta = self.meta
        size = f"{meta.imgsz[0]}x{meta.imgsz[1]}" + (" dynamic" if meta.dynamic else "")
        batch = "dynamic" if self.backend.dynamic_batch else meta.batch
        return (
            f"Runtime({self.backend.name}, {self.backend.path!r}, imgsz={size}, batch={batch}, "
            f"nc={meta.nc}, {meta.precision}, device={self.backend.device!r})"
        )
