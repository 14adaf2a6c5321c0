"""The ``Backend`` contract: one model artifact behind ``infer(batch) -> (preds, protos)`` in numpy."""

import logging

import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.end2end import detections_to_preds

LOGGER = logging.getLogger("edgeseg")
_LOGGED_CHOICES: set[str] = set()  # the default-device lines already logged by this process


class PredictUnavailable(EdgesegError):
    """The artifact loads (its metadata is readable) but cannot run on this machine, e.g. CoreML off macOS.

    Export verification reports ``verification skipped: <message>`` instead of failing.
    """


def parse_device(device: str | int) -> tuple[str, int]:
    """``"cpu"`` → ``("cpu", 0)``; ``"cuda"``, ``"cuda:1"``, ``"0"`` or ``0`` → ``("cuda", index)``.

    Raises:
        EdgesegError: any other spelling.
    """
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", 0
    if text == "cuda":
        return "cuda", 0
    index = text.removeprefix("cuda:")
    if index.isdigit():
        return "cuda", int(index)
    raise EdgesegError(f"unknown device {device!r} (use 'cpu', 'cuda', 'cuda:N' or a GPU index 'N')")


def choose_device(device: str | int | None, cuda_seen: bool, seen_by: str) -> str:
    """``device`` as given, or for None the default a YOLO user expects: the first CUDA GPU when
    ``seen_by`` (torch, onnxruntime, ...) sees one (``cuda_seen``), else the CPU; the choice is
    logged, once per process for each distinct choice.

    Returns:
        ``"cpu"``, ``"cuda:0"`` or ``str(device)``.
    """
    if device is not None:
        return str(device)
    choice = "cuda:0" if cuda_seen else "cpu"
    why = f"the first CUDA GPU {seen_by} sees" if cuda_seen else f"{seen_by} sees no CUDA GPU"
    message = f"device: {choice} ({why}; --device cpu forces the CPU)"
    if message not in _LOGGED_CHOICES:  # once per process: bench and export loops choose many times
        _LOGGED_CHOICES.add(message)
        LOGGER.info(message)
    return choice


class Backend:
    """A loaded artifact that turns an input batch into the output contract of docs/ARCHITECTURE.md.

    Subclasses set ``name`` and implement ``_forward`` for exactly ``meta.batch`` images (any
    number when the batch is dynamic); ``infer`` splits and pads other batch sizes around it.

    Attributes:
        name: short backend name (``torch``, ``onnxruntime``).
        path: the artifact's path.
        meta: the artifact's ModelMeta; ``meta.batch`` is the static batch (0 = dynamic) and
            ``meta.dynamic`` tells whether the input height/width may vary.
        device: the device it runs on, as the user gave it.
        concurrent: whether ``infer`` may run on two threads at once (the engine's session is
            thread-safe), so that a pipelined stream infers two frames at a time.
    """

    name = "backend"
    stand_in = ""  # what imitates the device when the artifact itself cannot run here (a simulator), for reports
    concurrent = False  # True when two threads may call ``infer`` at once (a pipelined stream then keeps two frames in flight)

    def __init__(self, path: str, meta: ModelMeta, device: str = "cpu"):
        try:
            meta.check()
        except ValueError as exc:
            raise EdgesegError(f"{path}: unusable model metadata: {exc}") from None
        self.path = str(path)
        self.meta = meta
        self.device = str(device)

    @property
    def dynamic_batch(self) -> bool:
        """True when one call accepts any number of images."""
        return self.meta.batch == 0

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model.

        Args:
            batch: (B, 3, H, W) float32 RGB in [0, 1], any B >= 1. A static-batch artifact gets
                it in chunks of ``meta.batch`` images, the last one padded with zeros.

        Returns:
            preds (B, 4 + nc + nm, A) float32 and protos (B, nm, H / 4, W / 4) float32. An
            end-to-end artifact's detections come back in that layout, one column per detection
            (``edgeseg.runtimes.pipeline.end2end.detections_to_preds``).
        """
        preds, protos = self._chunked(batch)
        if self.meta.end2end:
            preds = detections_to_preds(preds, self.meta.nc)
        return preds, protos

    def stream_infer(self):
        """The ``infer`` a pipelined stream calls (several frames in flight, decode and post-processing on threads beside it).

        ``infer`` itself, unless the engine has settings that suit overlapping work better than
        the lowest-latency ones ``infer`` uses (ONNX Runtime: ``OnnxBackend.stream_infer``).
        """
        return self.infer

    def select_branch(self, branch: str) -> None:
        """Run the head's ``one2many`` branch (NMS) or its ``one2one`` branch (top-k, YOLO26's).

        An exported artifact runs the branch it was exported with; only a ``.pt`` can switch.

        Raises:
            EdgesegError: a branch this artifact does not run.
        """
        current = "one2one" if self.meta.selection == "topk" else "one2many"
        if branch != current:
            raise EdgesegError(
                f"{self.path}: an exported model runs the branch it was exported with ({current}); "
                f"for {branch}, export the YOLO26 .pt {'with' if branch == 'one2one' else 'without'} --end2end"
            )

    def _chunked(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``_forward`` on ``batch`` in chunks of ``meta.batch`` images (the last one zero-padded) unless the batch is dynamic."""
        size = self.meta.batch
        if self.dynamic_batch or len(batch) == size:
            return self._forward(batch)
        preds, protos = [], []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            n = len(chunk)
            if n < size:
                chunk = np.concatenate((chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)))
            p, q = self._forward(chunk)
            preds.append(p[:n])
            protos.append(q[:n])
        return np.concatenate(preds), np.concatenate(protos)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model call on (meta.batch or any B, 3, H, W) float32 → (preds or end-to-end detections, protos) float32 numpy."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, device={self.device!r})"
