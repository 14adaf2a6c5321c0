"""The one batch loop: letterbox → ``infer`` → postprocess, for every model and every caller.

``Runtime.predict``, ``evaluate`` (val, training val, export verification's mAP), export
verification's output comparison, int8 calibration and bench all take their images through these
generators, so an artifact is judged on exactly the steps a user's predict takes
(docs/ARCHITECTURE.md, "Output contract").

``infer_batches`` reads and letterboxes the next batches on a background thread
(``read_ahead``) while the current one runs through ``infer`` and post-processing: image decode
and letterbox release the GIL, as do the engines, so they overlap.

``predict_batches(pipeline=True)`` goes further: decode + letterbox, ``infer`` and
post-processing each run on their own threads, joined by queues one batch deep, so the caller's
own work on the results (drawing, encoding a video, tracking) overlaps with the next inference
as well. ``infer`` runs on a pool (``run_ahead``) of one thread, or two for a backend that
allows concurrent calls, whose results are taken in order; the other stages are one thread
each. So the results come in source order and are the very ones the sequential loop gives; a
bounded number of batches is held (one per stage and queue, two more in inference), so memory
stays flat however long the stream.
"""

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import NamedTuple, TypeVar

import numpy as np

from edgeseg.runtimes.pipeline.postprocess import postprocess
from edgeseg.runtimes.pipeline.preprocess import LetterboxInfo, letterbox, rect_shape, to_input_tensor
from edgeseg.runtimes.pipeline.results import Results

Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Item = TypeVar("Item")
Result = TypeVar("Result")
READ_AHEAD = 1  # batches prepared ahead of the one being inferred (each one costs its input tensor in memory)
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer has gone


def read_ahead(items: Iterable[Item], depth: int = READ_AHEAD) -> Iterator[Item]:
    """``items``, in order, produced on a background thread up to ``depth`` ahead of the consumer.

    The first item is produced on the calling thread and the thread starts when the second is
    asked for, so a single image costs no thread. An exception raised while producing is raised
    here, at its place in the sequence. When the consumer stops early (``close()``, garbage
    collection, an exception), the producer thread is told to stop and joined; it finishes the
    item it is producing first, then closes ``items`` (so a chained ``read_ahead`` stops its own
    thread in turn).
    """
    items = iter(items)
    for first in items:
        yield first
        break
    else:
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        """Queue ``entry`` unless the consumer has gone; True when queued."""
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put((False, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a chained stage (another read_ahead) stops its own thread
                close()
        put((False, None))

    thread = threading.Thread(target=produce, name="edgeseg-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, value = ready.get()
            if more:
                yield value
            elif value is None:
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


class Batch(NamedTuple):
    """Up to ``size`` source images and the model input made from them.

    Attributes:
        paths: each image's path (``video#frame`` for frames), or None for arrays.
        images: the (H0, W0, 3) uint8 BGR source images.
        infos: each image's LetterboxInfo (source → input pixels).
        tensor: (B, 3, H, W) float32 RGB in [0, 1], the letterboxed images.
        seconds: time spent letterboxing (s).
    """

    paths: list
    images: list[np.ndarray]
    infos: list[LetterboxInfo]
    tensor: np.ndarray
    seconds: float


def batches(
    frames: Iterable[tuple[object, np.ndarray]], shape: tuple[int, int], size: int, rect_stride: int | None = None
) -> Iterator[Batch]:
    """Letterbox ``(path, (H0, W0, 3) uint8 BGR image)`` pairs to ``shape`` (H, W), ``size`` at a time.

    With ``rect_stride`` (a dynamic model's stride, px) a batch whose images all give the same
    ``rect_shape`` is padded only to that multiple of the stride instead of to ``shape``; the
    batch's ``tensor`` has the input shape used. ``frames`` is consumed lazily: a video or a
    folder is never held in memory whole.
    """
    frames = iter(frames)
    while chunk := list(islice(frames, size)):
        start = time.perf_counter()
        canvas = shape
        if rect_stride:
            fits = {rect_shape(image.shape[:2], shape, rect_stride) for _, image in chunk}
            canvas = fits.pop() if len(fits) == 1 else shape
        boxed = [letterbox(image, canvas) for _, image in chunk]
        tensor = to_input_tensor([b[0] for b in boxed])
        seconds = time.perf_counter() - start
        yield Batch([p for p, _ in chunk], [i for _, i in chunk], [b[1] for b in boxed], tensor, seconds)


def infer_batches(
    infer: Infer, frames: Iterable[tuple[object, np.ndarray]], shape: tuple[int, int], size: int, ahead: bool = True
) -> Iterator[tuple[Batch, tuple[np.ndarray, np.ndarray], float]]:
    """``batches`` run through ``infer``: yields (Batch, (preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4)), seconds of infer).

    With ``ahead`` the next batch is read and letterboxed on a background thread (``read_ahead``)
    while this one is inferred; without, each step waits for the one before.
    """
    prepared = batches(frames, shape, size)
    for batch in read_ahead(prepared) if ahead else prepared:
        start = time.perf_counter()
        outputs = infer(batch.tensor)
        yield batch, outputs, time.perf_counter() - start


def predict_batches(
    infer: Infer,
    frames: Iterable[tuple[object, np.ndarray]],
    shape: tuple[int, int],
    size: int,
    nc: int,
    names: dict[int, str] | None = None,
    pipeline: bool = True,
    concurrency: int = 1,
    rect_stride: int | None = None,
    **options,
) -> Iterator[list[Results]]:
    """The whole loop: yields one list of Results per batch, in ``frames`` order.

    Args:
        infer: (B, 3, H, W) float32 → (preds, protos) as ``Backend.infer``.
        frames: ``(path or None, (H0, W0, 3) uint8 BGR image)`` pairs.
        shape: the (H, W) model input in pixels.
        size: images per ``infer`` call.
        nc: number of classes; names: ``{class id: name}`` for the Results.
        pipeline: run decode + letterbox, ``infer`` and post-processing on threads of their own
            (see the module docstring), so they and the caller's work overlap; False runs every
            step of a batch on the calling thread before the next batch is read. The results
            are the same either way.
        concurrency: with ``pipeline``, how many ``infer`` calls may run at once (2 for a
            backend whose ``infer`` is thread-safe, ``Backend.concurrent``: on a CPU the
            engine's own threads leave cores idle between layers, and a second batch fills them).
        rect_stride: pad each batch only to a multiple of this stride (px) where its images
            allow (``batches``); for dynamic models. None pads every batch to ``shape``.
        options: ``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic``, ``retina_masks``
            (``edgeseg.runtimes.pipeline.postprocess.postprocess``).

    Each Results carries ``speed``: ms per image of ``preprocess`` (letterbox), ``inference``
    (wall time of its ``infer`` call) and ``postprocess``.
    """
    prepared = batches(frames, shape, size, rect_stride)
    if pipeline:
        inferred = run_ahead(_timed(infer), read_ahead(prepared), concurrency)
    else:
        inferred = map(_timed(infer), prepared)
    processed = _postprocessed(inferred, nc, names, options)
    yield from read_ahead(processed) if pipeline else processed


def _timed(infer: Infer) -> Callable[[Batch], tuple[Batch, tuple[np.ndarray, np.ndarray], float]]:
    """``infer`` on a Batch's tensor, returning (Batch, outputs, seconds it took)."""

    def run(batch: Batch):
        start = time.perf_counter()
        outputs = infer(batch.tensor)
        return batch, outputs, time.perf_counter() - start

    return run


def run_ahead(fn: Callable[[Item], Result], items: Iterable[Item], workers: int = 1) -> Iterator[Result]:
    """``fn(item)`` of each of ``items``, in order, computed on ``workers`` pool threads ahead of the consumer.

    ``workers`` calls run at once and one more waits, so while the consumer works on a result the
    next ones are being computed. ``items`` is read on the consumer's thread. An exception from
    ``fn`` or from ``items`` is raised at its place, after the results before it. When the consumer
    stops early the waiting calls are cancelled, the running ones finished, the pool shut down and
    ``items`` closed.
    """
    items = iter(items)
    pending: deque = deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="edgeseg-run-ahead")
    try:
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except Exception as exc:  # the results before it first
                while pending:
                    yield pending.popleft().result()
                raise exc
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _postprocessed(inferred, nc: int, names, options: dict) -> Iterator[list[Results]]:
    """``infer_batches`` output post-processed into one list of Results per batch, with their ``speed``."""
    for batch, (preds, protos), seconds in inferred:
        start = time.perf_counter()
        shape = batch.tensor.shape[2:]
        results = postprocess(preds, protos, batch.infos, shape, nc=nc, names=names, images=batch.images, paths=batch.paths, **options)
        per_image = 1000 / len(batch.images)
        speed = {
            "preprocess": batch.seconds * per_image,
            "inference": seconds * per_image,
            "postprocess": (time.perf_counter() - start) * per_image,
        }
        for result in results:
            result.speed = dict(speed)
        yield results
