"""The ByteTrack-style tracker: Kalman known answers, occlusion, crossing objects, low-score rescue, mask association."""

import numpy as np
import pytest

from edgeseg.runtimes.tracking import ByteTracker, TrackerSettings
from edgeseg.runtimes.tracking import kalman
from edgeseg.runtimes.tracking.byte_tracker import assign, box_iou, mask_iou, shifted

H, W = 120, 200


def box_at(cx: float, cy: float, w: float = 20, h: float = 20) -> np.ndarray:
    """(4,) xyxy of a w x h box centred at (cx, cy)."""
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def disc(cx: float, cy: float, r: float = 10) -> np.ndarray:
    """(H, W) bool disc."""
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def test_kalman_learns_a_constant_velocity():
    mean, cov = kalman.initiate(np.array([10.0, 50, 1, 20]))
    for frame in range(1, 30):
        (mean,), (cov,) = kalman.predict(mean[None], cov[None])
        mean, cov = kalman.update(mean, cov, np.array([10.0 + 3 * frame, 50, 1, 20]))
    assert mean[4] == pytest.approx(3, abs=0.05) and mean[5] == pytest.approx(0, abs=0.05)
    (ahead,), _ = kalman.predict(mean[None], cov[None])
    assert ahead[0] == pytest.approx(10 + 3 * 30, abs=0.2)
    np.testing.assert_allclose(kalman.xyah_to_xyxy(kalman.xyxy_to_xyah(box_at(5, 6, 8, 4)[None])), box_at(5, 6, 8, 4)[None])


def test_iou_shift_and_assignment_known_answers():
    np.testing.assert_allclose(box_iou(box_at(10, 10)[None], np.stack([box_at(10, 10), box_at(20, 10), box_at(60, 10)])), [[1, 1 / 3, 0]])
    a = disc(50, 50)
    np.testing.assert_array_equal(shifted(a, 7, -3), disc(57, 47))
    assert not shifted(a, 500, 0).any()
    assert mask_iou(a[None], np.stack([a, shifted(a, 100, 0)]))[0].tolist() == [1.0, 0.0]
    pairs, rows, cols = assign(np.array([[0.1, 0.2], [0.15, 0.9], [0.95, 0.99]]), 0.8)
    assert pairs == [(0, 1), (1, 0)] and rows == [2] and cols == []  # optimal overall, not greedy (0.1 + 0.9 > 0.2 + 0.15)


def run(tracker: ByteTracker, frames) -> list[np.ndarray]:
    """Feed ``frames`` ((boxes, scores) or (boxes, scores, masks) per frame); each frame's ids."""
    ids = []
    for frame in frames:
        boxes, scores, *masks = frame
        ids.append(tracker.update(np.reshape(boxes, (-1, 4)), scores, np.zeros(len(scores), int), masks[0] if masks else None))
    return ids


def test_a_track_survives_a_ten_frame_occlusion():
    frames = []
    for t in range(40):
        seen = not 10 <= t < 20  # hidden for frames 10..19
        frames.append(([box_at(20 + 4 * t, 60)] if seen else np.zeros((0, 4)), [0.9] if seen else []))
    ids = run(ByteTracker(), frames)
    assert {int(i[0]) for i in ids if len(i)} == {1}  # the same id before and after, never a new one


def test_a_track_gone_longer_than_the_buffer_comes_back_as_a_new_one():
    frames = [([box_at(50, 60)], [0.9]) if not 1 <= t < 8 else (np.zeros((0, 4)), []) for t in range(12)]
    ids = run(ByteTracker(TrackerSettings(track_buffer=5)), frames)
    assert ids[0].tolist() == [1] and ids[8].tolist() == [-1] and ids[9].tolist() == [2]  # a new track confirms on its second frame


def test_two_crossing_objects_keep_their_ids():
    frames = []
    for t in range(40):
        a, b = box_at(20 + 4 * t, 56), box_at(180 - 4 * t, 64)  # they pass at t = 20, overlapping for ~9 frames (IoU up to 0.43)
        frames.append((np.stack([a, b]), [0.9, 0.85]))
    ids = run(ByteTracker(), frames)
    assert all(i.tolist() == [1, 2] for i in ids)


def test_a_weak_detection_keeps_a_track_and_does_not_start_one():
    frames = [([box_at(30 + 2 * t, 60)], [0.9 if t < 5 or t >= 10 else 0.15]) for t in range(15)]
    frames.append(([box_at(150, 20)], [0.15]))  # a weak detection far from any track
    ids = run(ByteTracker(), frames)
    assert [int(i[0]) for i in ids[:15]] == [1] * 15 and ids[15].tolist() == [-1]


def test_mask_association_follows_shapes_where_boxes_are_ambiguous():
    """Two objects whose boxes coincide: a ring around a dot. Boxes swap them; masks do not."""
    ring = disc(100, 60, 30) & ~disc(100, 60, 20)
    dot = disc(100, 60, 8)
    box_ring, box_dot = box_at(100, 60, 60, 60), box_at(100, 60, 58, 58)  # the detector boxes them alike
    first = (np.stack([box_ring, box_dot]), [0.9, 0.9], np.stack([ring, dot]))
    swapped = (np.stack([box_dot, box_ring]), [0.9, 0.9], np.stack([ring, dot]))  # boxes given in the other order
    by_mask = run(ByteTracker(TrackerSettings(association="mask")), [first, swapped, swapped])
    assert [i.tolist() for i in by_mask] == [[1, 2]] * 3
    by_box = run(ByteTracker(), [first, swapped, swapped])
    assert [i.tolist() for i in by_box] == [[1, 2], [2, 1], [2, 1]]
    with pytest.raises(ValueError, match="mask association needs"):
        ByteTracker(TrackerSettings(association="mask")).update(box_ring[None], [0.9], [0])


def test_mask_association_matches_lost_tracks_by_box_and_seen_ones_by_mask():
    """A ring that comes back as a dot in the same box: a lost track takes it (its mask is stale), a track seen last frame does not."""
    ring = disc(100, 60, 30) & ~disc(100, 60, 20)
    dot = disc(100, 60, 8)
    box = box_at(100, 60, 60, 60)
    seen = ([box], [0.9], ring[None])
    nothing = (np.zeros((0, 4)), [], np.zeros((0, H, W), bool))
    back = ([box], [0.9], dot[None])
    settings = TrackerSettings(association="mask")
    after_a_gap = run(ByteTracker(settings), [seen] * 4 + [nothing] * 2 + [back])
    assert [i.tolist() for i in after_a_gap] == [[1]] * 4 + [[], []] + [[1]]
    at_once = run(ByteTracker(settings), [seen] * 4 + [back, back])
    # seen on the previous frame, track 1 refuses the dot (mask IoU 0: it starts a new, unconfirmed
    # track); lost from then on, it takes the dot back by its box on the next frame
    assert [i.tolist() for i in at_once] == [[1]] * 4 + [[-1], [1]]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="association must be"):
        TrackerSettings(association="centre")
    with pytest.raises(ValueError, match="low_score <= high_score"):
        TrackerSettings(low_score=0.5, high_score=0.3)
