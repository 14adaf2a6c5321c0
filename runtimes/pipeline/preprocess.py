"""Letterboxing: the one image-to-input transform used by training val, every runtime and calibration."""

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class LetterboxInfo:
    """How a source image was mapped into the model input.

    ``input = source * ratio + (pad_x, pad_y)``, in pixels; ``source_shape`` is (h, w).
    """

    ratio: float
    pad_x: float
    pad_y: float
    source_shape: tuple[int, int]


def fit_on_canvas(
    image: np.ndarray, shape: tuple[int, int], centre: bool = True, scaleup: bool = True, interpolation: int | None = None
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize ``image`` keeping its aspect ratio to fit ``shape`` and place it on a PAD_VALUE grey canvas.

    Args:
        image: (H, W, C) or (H, W) uint8 image, any channel order.
        shape: (height, width) of the canvas, in pixels.
        centre: centre the image (the letterbox); False places it top-left.
        scaleup: allow enlarging small images (False only shrinks).
        interpolation: a ``cv2.INTER_*`` flag; None: ``INTER_AREA`` when shrinking, else ``INTER_LINEAR``.

    Returns:
        The (height, width, C) uint8 canvas, the scale ``ratio`` (canvas px per image px) and the
        (left, top) offset of the image on it, in canvas px: ``canvas = image * ratio + offset``.
        A centred image gets ``(free // 2)`` of the free pixels before it on each axis.
    """
    if image.ndim == 2:
        image = image[..., None]
    h, w = image.shape[:2]
    new_h, new_w = shape
    ratio = min(new_h / h, new_w / w)
    if not scaleup:
        ratio = min(ratio, 1.0)
    fit_w, fit_h = max(1, int(round(w * ratio))), max(1, int(round(h * ratio)))
    if (w, h) != (fit_w, fit_h):
        if interpolation is None:
            interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (fit_w, fit_h), interpolation=interpolation).reshape(fit_h, fit_w, -1)
    left, top = ((new_w - fit_w) // 2, (new_h - fit_h) // 2) if centre else (0, 0)
    canvas = np.full((new_h, new_w, image.shape[2]), PAD_VALUE, np.uint8)
    canvas[top : top + fit_h, left : left + fit_w] = image
    return canvas, ratio, (left, top)


def letterbox(image: np.ndarray, new_shape: tuple[int, int], scaleup: bool = True) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping the aspect ratio (bilinear) and pad to ``new_shape`` with grey (PAD_VALUE), centred.

    Args:
        image: (H, W, C) uint8 image, any channel order.
        new_shape: (height, width) of the model input, in pixels.
        scaleup: allow enlarging small images (False only shrinks).

    Returns:
        The (new_h, new_w, C) uint8 padded image and the LetterboxInfo that maps source pixel
        coordinates to input ones (``fit_on_canvas``).
    """
    padded, ratio, (left, top) = fit_on_canvas(image, new_shape, scaleup=scaleup, interpolation=cv2.INTER_LINEAR)
    return padded, LetterboxInfo(ratio=ratio, pad_x=float(left), pad_y=float(top), source_shape=image.shape[:2])


def rect_shape(source_shape: tuple[int, int], shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """The smallest input holding an image letterboxed to fit ``shape``: each side rounded up to ``stride``.

    Args:
        source_shape: (H0, W0) of the image, in pixels.
        shape: (H, W) the image is scaled to fit, in pixels (a multiple of ``stride``).
        stride: the model's largest stride, in pixels.

    Returns:
        (h, w) in pixels, each at most the side of ``shape``: a 300 x 200 (W0 x H0) image fitted
        to 128 x 128 at stride 32 gives (96, 128) instead of (128, 128), so a dynamic model runs on
        fewer padding pixels (Ultralytics' minimal letterbox for its ``.pt`` predict).
    """
    h0, w0 = source_shape
    ratio = min(shape[0] / h0, shape[1] / w0)
    fit_h, fit_w = max(1, int(round(h0 * ratio))), max(1, int(round(w0 * ratio)))
    return min(shape[0], -(-fit_h // stride) * stride), min(shape[1], -(-fit_w // stride) * stride)


def to_input_tensor(images: list[np.ndarray]) -> np.ndarray:
    """Stack letterboxed BGR uint8 images (H, W, 3) into a (B, 3, H, W) float32 RGB batch in [0, 1].

    Each channel plane is divided by 255 in float32 straight into its place in the batch
    (``x / 255``, bit for bit as dividing the whole float32 batch; ~10x faster at 320).
    """
    h, w, channels = np.atleast_3d(images[0]).shape
    batch = np.empty((len(images), channels, h, w), np.float32)
    for i, image in enumerate(images):
        for channel, plane in enumerate(cv2.split(image)[::-1]):
            np.divide(plane, np.float32(255.0), out=batch[i, channel], dtype=np.float32)
    return batch
