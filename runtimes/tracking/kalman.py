"""A constant-velocity Kalman filter over boxes as (cx, cy, a, h), for many tracks at once.

State per track: ``(cx, cy, a, h, vcx, vcy, va, vh)``: the box centre in px, its aspect ratio
w / h, its height in px, and their velocities per frame. Process and measurement noise scale with
the box height (the settings ByteTrack and DeepSORT use: 1/20 of the height for position, 1/160
for velocity), so a large near object may move more px per frame than a small far one.
"""

import numpy as np

POSITION_WEIGHT = 1 / 20
VELOCITY_WEIGHT = 1 / 160
NDIM = 4


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 → (N, 4) cx, cy, w / h, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack(((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, w / h, h), 1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) cx, cy, w / h, h (further columns ignored) → (N, 4) x1, y1, x2, y2."""
    xyah = np.asarray(xyah, dtype=np.float64).reshape(len(xyah), -1)
    w, h = xyah[:, 2] * xyah[:, 3], xyah[:, 3]
    return np.stack((xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2), 1)


_MOTION = np.eye(2 * NDIM) + np.eye(2 * NDIM, k=NDIM)  # position += velocity, once per frame
_OBSERVE = np.eye(NDIM, 2 * NDIM)


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A new track's state from its first box.

    Args:
        measurement: (4,) cx, cy, a, h.

    Returns:
        mean (8,) with zero velocity, covariance (8, 8).
    """
    h = measurement[3]
    std = [2 * POSITION_WEIGHT * h, 2 * POSITION_WEIGHT * h, 1e-2, 2 * POSITION_WEIGHT * h,
           10 * VELOCITY_WEIGHT * h, 10 * VELOCITY_WEIGHT * h, 1e-5, 10 * VELOCITY_WEIGHT * h]  # fmt: skip
    return np.r_[measurement, np.zeros(NDIM)], np.diag(np.square(std))


def predict(means: np.ndarray, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track.

    Args:
        means: (T, 8) states; covariances: (T, 8, 8).

    Returns:
        The predicted (T, 8) means and (T, 8, 8) covariances.
    """
    h = means[:, 3]
    ones = np.ones_like(h)
    std = np.stack([POSITION_WEIGHT * h, POSITION_WEIGHT * h, 1e-2 * ones, POSITION_WEIGHT * h,
                    VELOCITY_WEIGHT * h, VELOCITY_WEIGHT * h, 1e-5 * ones, VELOCITY_WEIGHT * h], 1)  # fmt: skip
    noise = np.einsum("ti,ij->tij", np.square(std), np.eye(2 * NDIM))
    return means @ _MOTION.T, _MOTION @ covariances @ _MOTION.T + noise


def update(mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct one track's state with a matched box.

    Args:
        mean: (8,) predicted state; covariance: (8, 8); measurement: (4,) cx, cy, a, h.

    Returns:
        The corrected (8,) mean and (8, 8) covariance.
    """
    h = mean[3]
    noise = np.diag(np.square([POSITION_WEIGHT * h, POSITION_WEIGHT * h, 1e-1, POSITION_WEIGHT * h]))
    projected = _OBSERVE @ mean
    innovation_cov = _OBSERVE @ covariance @ _OBSERVE.T + noise
    gain = np.linalg.solve(innovation_cov, _OBSERVE @ covariance).T  # covariance is symmetric
    return mean + gain @ (measurement - projected), covariance - gain @ innovation_cov @ gain.T
