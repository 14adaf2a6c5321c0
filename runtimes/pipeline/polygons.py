"""Masks to polygons: the outlines ``Results.polygons``, YOLO txt labels, plots and COCO import use."""

import cv2
import numpy as np


def outer_contours(mask: np.ndarray) -> list[np.ndarray]:
    """The outer contours of one (H, W) bool or 0/1 mask (holes ignored): (K, 2) int32 x, y boundary pixels each.

    A vertex is the integer index of a boundary pixel, so ``cv2.fillPoly`` on the vertices redraws
    the mask; straight runs are compressed to their end points.
    """
    pixels = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8, copy=False)
    contours, _ = cv2.findContours(pixels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) for c in contours]


def masks_to_polygons(masks: np.ndarray) -> list[np.ndarray]:
    """Outline of each mask: its largest outer contour (``outer_contours``).

    Args:
        masks: (N, H, W) bool.

    Returns:
        N float32 arrays of shape (K, 2) with x, y vertices in pixels; an empty mask gives a
        (0, 2) array.
    """
    polygons = []
    for mask in masks:
        contours = outer_contours(mask)
        if not contours:
            polygons.append(np.zeros((0, 2), dtype=np.float32))
            continue
        largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
        polygons.append(largest.astype(np.float32))
    return polygons


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Every outer contour of one (H, W) binary mask that is a polygon: (n, 2) float64 x, y pixels each, n >= 3."""
    return [c.astype(np.float64) for c in outer_contours(mask) if len(c) >= 3]
