"""Test helpers: a train-free yolo11n-seg that makes real detections on given images."""

import time
from pathlib import Path

import cv2
import numpy as np
import torch

import edgeseg
from edgeseg.data.synth import CLASS_NAMES, format_label, render_sample, sample_rng, synthesize
from edgeseg.runtimes import load
from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.io.data_config import label_path
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor


def calibrated_model(images: list[np.ndarray], imgsz: int, bn_gain: float | None = None, yaml: str = "yolo11n-seg.yaml") -> "edgeseg.Model":
    """A random model from ``yaml`` (seed 0, the synthetic classes) whose scores spread over (0, 1) on ``images``.

    Fresh BatchNorm statistics (mean 0, var 1) let activations vanish through the untrained net,
    leaving every anchor with the same score; one train-mode pass over ``images`` (BGR, any size,
    letterboxed to ``imgsz``) with cumulative statistics fixes that. The class logits of that pass
    are then standardised per level and class and shifted by -2.5, so ~8 % of the anchors score
    above 0.25. ``bn_gain`` sets every BatchNorm weight first (0.3 keeps SiLU near linear, so fp16
    and int8 noise do not derail the random net).
    """
    torch.manual_seed(0)
    model = edgeseg.Model(yaml, names=list(CLASS_NAMES))
    model.imgsz = imgsz
    for module in model.net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
            if bn_gain is not None:
                module.weight.data.fill_(bn_gain)
    logits = []
    hooks = [b[-1].register_forward_hook(lambda m, i, out: logits.append(out)) for b in model.net.head.cv3]
    model.net.train()
    with torch.no_grad():
        model.net(torch.from_numpy(to_input_tensor([letterbox(im, (imgsz, imgsz))[0] for im in images])))
    model.net.eval()
    for hook, branch, out in zip(hooks, model.net.head.cv3, logits):
        hook.remove()
        mean, std = out.mean((0, 2, 3)), out.std((0, 2, 3))
        branch[-1].weight.data /= std[:, None, None, None]
        branch[-1].bias.data[:] = (branch[-1].bias.data - mean) / std - 2.5
    return model


def sample(seed: int, index: int, width: int | None, height: int | None) -> np.ndarray:
    """A (height, width, 3) uint8 BGR synthetic image (``render_sample``; None sizes: the generator's own)."""
    return render_sample(sample_rng(seed, "val", index), width=width, height=height)[0]


def write_video(path, spec: tuple, n_frames: int, fps: float = 10.0, fourcc: str = "mp4v"):
    """A ``n_frames`` video of the ``sample(*spec)`` image moving right 8 px a frame, at ``fps``; returns ``path``."""
    base = sample(*spec)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (base.shape[1], base.shape[0]))
    assert writer.isOpened()
    for i in range(n_frames):
        writer.write(np.roll(base, 8 * i, axis=1))
    writer.release()
    return path


def write_frames(path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "MJPG"):
    """A video of ``frames`` ((H, W, 3) uint8 BGR, all one size) at ``fps``; returns ``path``."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def self_labelled_dataset(folder, checkpoint, n_train: int, n_val: int):
    """``synthesize(folder, n_train, n_val)``'s data YAML with ``checkpoint``'s own predictions as val labels (non-trivial mAP)."""
    yaml_path = synthesize(folder, n_train, n_val, progress=False)
    for result in load(checkpoint).predict(yaml_path.parent / "images" / "val"):
        result.save_txt(label_path(result.path))
    return yaml_path


def memorise_set(folder) -> Path:
    """8 synthetic 128 x 128 images with two big shapes each, for training and val (a set a model can learn by heart): its data YAML."""
    folder = Path(folder)
    for sub in ("images/train", "labels/train"):
        (folder / sub).mkdir(parents=True)
    for i in range(8):
        image, classes, polygons, _ = render_sample(np.random.default_rng([7, i]), 128, 128, 2)
        cv2.imwrite(str(folder / f"images/train/{i}.png"), image)
        (folder / f"labels/train/{i}.txt").write_text(format_label(classes, polygons, 128, 128))
    data = folder / "data.yaml"
    data.write_text(f"path: {folder}\ntrain: images/train\nval: images/train\nnames: {list(CLASS_NAMES)}\n")
    return data


def non_square_image() -> np.ndarray:
    """A (150, 240, 3) BGR synthetic image."""
    return sample(2, 0, 240, 150)


def export_model(imgsz: int, bn_gain: float | None = None, yaml: str = "yolo11n-seg.yaml") -> "edgeseg.Model":
    """``calibrated_model`` on export verification's synthetic images and ``non_square_image`` (the export tests' model)."""
    from edgeseg.targets.verify import synthetic_images

    return calibrated_model([*synthetic_images(), non_square_image()], imgsz, bn_gain=bn_gain, yaml=yaml)


def same_objects(a, b, box_tol: float = 0.5, min_mask_iou: float = 0.98) -> None:
    """Assert two Results hold the same detections in any order: classes, boxes within ``box_tol`` px, mask IoU (1 for two empty masks).

    Detections are paired after sorting both by class, then x1, then y1 (two models may rank
    near-equal scores the other way round).
    """
    assert len(a) == len(b) > 0
    pa, pb = (np.lexsort((r.boxes[:, 1].round(), r.boxes[:, 0].round(), r.classes)) for r in (a, b))
    np.testing.assert_array_equal(a.classes[pa], b.classes[pb])
    np.testing.assert_allclose(a.boxes[pa], b.boxes[pb], atol=box_tol)
    ma, mb = a.masks[pa], b.masks[pb]
    union = (ma | mb).sum((1, 2))
    iou = np.where(union > 0, (ma & mb).sum((1, 2)) / np.maximum(union, 1), 1.0)  # two empty masks agree
    assert iou.min() >= min_mask_iou, iou


def mask_map(runtime, dataset) -> float:
    """Mask mAP50-95 of a Runtime (``edgeseg.runtimes.load``) on the data YAML's val split, at the runtime's own size."""
    return runtime.val(dataset, progress=False).seg.map


class BlobBackend(Backend):
    """A detector that cannot be wrong: every bright blob of a colour channel is one detection of class 0.

    Each blob's box (``cv2.connectedComponentsWithStats`` per channel), score 0.9 and a one-hot
    mask coefficient for its channel fill one anchor column; ``protos`` are the channels'
    brightness at 1/4 scale, positive inside blobs, so each mask is its blob. Objects drawn in
    different channels stay apart where they overlap. It runs the runtime's whole pipeline
    (letterbox, NMS, mask decoding) with known answers.
    """

    name = "blobs"

    def __init__(self, imgsz: int = 160):
        super().__init__("blobs", ModelMeta(names={0: "blob"}, imgsz=(imgsz, imgsz), nm=3), "cpu")

    def _forward(self, batch):
        preds = np.zeros((len(batch), 4 + 1 + 3, 64), np.float32)
        for b, image in enumerate(batch):
            column = 0
            for channel in range(3):
                count, _, stats, _ = cv2.connectedComponentsWithStats((image[channel] > 0.8).astype(np.uint8))
                for x, y, w, h, _ in stats[1:count]:
                    preds[b, :6, column] = [x + w / 2, y + h / 2, w, h, 0.9, 0]
                    preds[b, 5 + channel, column] = 1.0
                    column += 1
        b, c, h, w = batch.shape
        pooled = batch.reshape(b, c, h // 4, 4, w // 4, 4).mean((3, 5))  # 1/4 scale, as the model's prototypes
        return preds, (pooled * 2 - 1.2).astype(np.float32)  # bright 0.8, gray 114/255: -0.75


PATHS = [((10, 50), (170, 50)), ((170, 56), (10, 56)), ((90, 5), (90, 100))]  # crossing: each object in its own channel


def position(path: int, t: int, n: int) -> tuple[float, float]:
    """Top-left corner of ``PATHS[path]``'s square at frame ``t`` of ``n``."""
    (x0, y0), (x1, y1) = PATHS[path]
    return round(x0 + (x1 - x0) * t / (n - 1)), round(y0 + (y1 - y0) * t / (n - 1))


def squares(n: int, size: int = 14) -> list[np.ndarray]:
    """``n`` (120, 200) gray frames with one white ``size`` px square per ``PATHS`` entry, in channel 0, 1, 2."""
    frames = []
    for t in range(n):
        frame = np.full((120, 200, 3), 114, np.uint8)
        for path in range(len(PATHS)):
            x, y = position(path, t, n)
            frame[y : y + size, x : x + size, path] = 255
        frames.append(frame)
    return frames


class MjpegServer:
    """An MJPEG-over-HTTP stream on 127.0.0.1, as IP cameras serve it, that drops its connection on cue.

    Connection k (from 0) sends ``frames[k * per_connection : (k + 1) * per_connection]`` then
    closes; connections after ``connections`` get 404, so a reconnecting reader finds it gone.
    Use as a context manager; ``url`` is the stream's address.

    Args:
        frames: (H, W, 3) uint8 BGR frames, in order.
        per_connection: frames sent per connection.
        connections: connections served before the stream is gone.
        interval: seconds between frames.
    """

    def __init__(self, frames, per_connection: int, connections: int = 1, interval: float = 0.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]
        served = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                k = len(served)
                served.append(self.path)
                if k >= connections:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for jpeg in jpegs[k * per_connection : (k + 1) * per_connection]:
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    try:
                        self.wfile.write(head + jpeg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(interval)

        self.served = served
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/stream.mjpg"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
