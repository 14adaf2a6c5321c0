"""Masks to polygons: the outline ``Results.polygons``, YOLO txt labels and plots use."""

import cv2
import numpy as np


def masks_to_polygons(masks: np.ndarray) -> list[np.ndarray]:
    """Outline of each mask: its largest outer contour.

    Args:
        masks: (N, H, W) bool.

    Returns:
        N float32 arrays of shape (K, 2) with x, y vertices; a vertex is the integer index of a
        boundary pixel (so ``cv2.fillPoly`` on the vertices redraws the mask). An empty mask
        gives a (0, 2) array.
    """
    polygons = []
    for mask in masks:
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            polygons.append(np.zeros((0, 2), dtype=np.float32))
            continue
        largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
        polygons.append(largest.reshape(-1, 2).astype(np.float32))
    return polygons
