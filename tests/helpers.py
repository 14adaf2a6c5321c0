"""Test helpers: a train-free yolo11n-seg that makes real detections on given images."""

import cv2
import numpy as np
import torch

import edgeseg
from edgeseg.data.synth import CLASS_NAMES, render_sample, sample_rng, synthesize
from edgeseg.runtimes import load
from edgeseg.runtimes.data_config import label_path
from edgeseg.runtimes.preprocess import letterbox, to_input_tensor


def calibrated_model(images: list[np.ndarray], imgsz: int, bn_gain: float | None = None) -> "edgeseg.Model":
    """A random yolo11n-seg (seed 0, the synthetic classes) whose scores spread over (0, 1) on ``images``.

    Fresh BatchNorm statistics (mean 0, var 1) let activations vanish through the untrained net,
    leaving every anchor with the same score; one train-mode pass over ``images`` (BGR, any size,
    letterboxed to ``imgsz``) with cumulative statistics fixes that. The class logits of that pass
    are then standardised per level and class and shifted by -2.5, so ~8 % of the anchors score
    above 0.25. ``bn_gain`` sets every BatchNorm weight first (0.3 keeps SiLU near linear, so fp16
    and int8 noise do not derail the random net).
    """
    torch.manual_seed(0)
    model = edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES))
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


def self_labelled_dataset(folder, checkpoint, n_train: int, n_val: int):
    """``synthesize(folder, n_train, n_val)``'s data YAML with ``checkpoint``'s own predictions as val labels (non-trivial mAP)."""
    yaml_path = synthesize(folder, n_train, n_val, progress=False)
    for result in load(checkpoint).predict(yaml_path.parent / "images" / "val"):
        result.save_txt(label_path(result.path))
    return yaml_path


def non_square_image() -> np.ndarray:
    """A (150, 240, 3) BGR synthetic image."""
    return sample(2, 0, 240, 150)


def export_model(imgsz: int, bn_gain: float | None = None) -> "edgeseg.Model":
    """``calibrated_model`` on export verification's synthetic images and ``non_square_image`` (the export tests' model)."""
    from edgeseg.targets.verify import synthetic_images

    return calibrated_model([*synthetic_images(), non_square_image()], imgsz, bn_gain=bn_gain)


def same_objects(a, b, box_tol: float = 0.5, min_mask_iou: float = 0.98) -> None:
    """Assert two Results hold the same detections in any order: classes, boxes within ``box_tol`` px, mask IoU.

    Detections are paired after sorting both by class, then x1, then y1 (two models may rank
    near-equal scores the other way round).
    """
    assert len(a) == len(b) > 0
    pa, pb = (np.lexsort((r.boxes[:, 1].round(), r.boxes[:, 0].round(), r.classes)) for r in (a, b))
    np.testing.assert_array_equal(a.classes[pa], b.classes[pb])
    np.testing.assert_allclose(a.boxes[pa], b.boxes[pb], atol=box_tol)
    ma, mb = a.masks[pa], b.masks[pb]
    iou = (ma & mb).sum((1, 2)) / np.maximum((ma | mb).sum((1, 2)), 1)
    assert iou.min() >= min_mask_iou, iou


def mask_map(runtime, dataset) -> float:
    """Mask mAP50-95 of a Runtime (``edgeseg.runtimes.load``) on the data YAML's val split, at the runtime's own size."""
    return runtime.val(dataset, progress=False).seg.map
