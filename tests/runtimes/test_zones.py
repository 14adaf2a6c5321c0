"""Counting in zones: tracks entering and leaving polygons and crossing lines, decided by their masks; trails; ``edgeseg track --zone/--line``."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import edgeseg.runtimes
from edgeseg.cli import main
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.runtimes.runtime import Runtime
from edgeseg.runtimes.tracking import LineZone, PolygonZone, TrackRecorder, Trails, ZoneCounter, parse_zone
from edgeseg.runtimes.tracking.zones import by_class

import helpers
from helpers import PATHS, BlobBackend, squares

H, W = 120, 200
NAMES = {0: "a", 1: "b"}


def frame(*objects, path=None) -> Results:
    """Tracked Results of rectangles ``(track id, class, x1, y1, x2, y2)`` on an (H, W) frame."""
    masks = np.zeros((len(objects), H, W), bool)
    for mask, (_, _, x1, y1, x2, y2) in zip(masks, objects):
        mask[y1:y2, x1:x2] = True
    boxes = [o[2:] for o in objects] or np.zeros((0, 4))
    return Results(
        boxes, [0.9] * len(objects), [o[1] for o in objects], masks, NAMES, (H, W), path=path, track_ids=[o[0] for o in objects]
    )


def run(counter: ZoneCounter, frames) -> list[dict]:
    """Every event of ``frames`` through ``counter``."""
    return [event for f in frames for event in counter.update(f)]


def test_crossing_squares_count_once_each_way_by_their_masks():
    # PATHS: square 0 moves right along y 50, square 1 left along y 56, square 2 down along x 90-104
    gate = LineZone((100, 0), (100, 120), "gate")  # drawn downwards: its right-hand side is the image's left
    right = PolygonZone([(120, 0), (200, 0), (200, 120), (120, 120)], "right")
    counter = ZoneCounter([gate, right])
    runtime = Runtime(BlobBackend())
    events = run(counter, runtime.track(squares(30)))
    assert PATHS[2][0][0] < gate.start[0] < PATHS[2][0][0] + 14  # square 2 straddles the line all the way down
    counts = counter.counts["images"]
    assert counts["gate"] == {"in": {"blob": 1}, "out": {"blob": 1}}  # square 1 (onto the left) in, square 0 out
    assert counts["right"] == {"in": {"blob": 1}, "out": {"blob": 1}, "inside": {"blob": 1}}
    ins = {e["zone"]: e["track_id"] for e in events if e["direction"] == "in"}
    outs = {e["zone"]: e["track_id"] for e in events if e["direction"] == "out"}
    assert ins["gate"] == outs["right"] and outs["gate"] == ins["right"]  # the same two squares, each way


def test_a_mask_flickering_on_the_border_counts_once_per_real_change():
    zone = PolygonZone([(100, 0), (200, 0), (200, 120), (100, 120)], "z")  # the right half
    counter = ZoneCounter([zone])
    # a 20 px wide object of class b whose share inside the zone goes 0, .55, .45, .55, .2, .6
    lefts = [60, 91, 89, 91, 84, 92]
    events = run(counter, [frame((7, 1, x, 40, x + 20, 60)) for x in lefts])
    assert [zone.shares(frame((7, 1, x, 40, x + 20, 60)).masks)[0] for x in lefts] == pytest.approx([0, 0.55, 0.45, 0.55, 0.2, 0.6])
    assert [e["direction"] for e in events] == ["in", "out", "in"]  # .45 is not out (hysteresis), .2 is
    assert counter.counts["images"]["z"] == {"in": {"b": 2}, "out": {"b": 1}, "inside": {"b": 1}}


def test_first_sight_inside_is_not_an_entry_and_classes_and_sequences_count_apart():
    zone = PolygonZone([(0, 0), (100, 0), (100, 120), (0, 120)], "left")
    counter = ZoneCounter([zone])
    inside, outside = (1, 0, 10, 10, 30, 30), (1, 0, 150, 10, 170, 30)
    run(counter, [frame(inside, path="a.mp4#0"), frame(outside, path="a.mp4#1")])  # first seen inside, then leaves
    run(counter, [frame(outside, (2, 1, 150, 50, 170, 70), path="b.mp4#0"), frame(inside, (2, 1, 10, 50, 30, 70), path="b.mp4#1")])
    assert counter.counts["a.mp4"]["left"] == {"in": {}, "out": {"a": 1}, "inside": {}}
    assert counter.counts["b.mp4"]["left"] == {"in": {"a": 1, "b": 1}, "out": {}, "inside": {"a": 1, "b": 1}}


def test_a_line_counts_only_masks_passing_within_its_span():
    line = LineZone((0, 60), (80, 60), "short")  # left to right: its right-hand side is below
    counter = ZoneCounter([line])
    down_near = [frame((1, 0, 20, y, 40, y + 20)) for y in (10, 30, 50, 70, 90)]  # crosses at x 20-40: within
    down_far = [frame((2, 0, 150, y, 170, y + 20)) for y in (10, 30, 50, 70, 90)]  # crosses at x 150-170: beyond the end
    up_near = [frame((3, 1, 20, y, 40, y + 20)) for y in (90, 70, 50, 30, 10)]
    events = run(counter, down_near + down_far + up_near)
    assert [(e["track_id"], e["direction"]) for e in events] == [(1, "in"), (3, "out")]
    assert counter.counts["images"]["short"] == {"in": {"a": 1}, "out": {"b": 1}}


def test_bad_zones_and_untracked_results_are_refused():
    with pytest.raises(ValueError, match="at least 3 points"):
        PolygonZone([(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="same point"):
        LineZone((5, 5), (5, 5))
    with pytest.raises(ValueError, match="distinct names"):
        ZoneCounter([LineZone((0, 0), (1, 1)), LineZone((0, 1), (1, 0))])
    untracked = Results(np.zeros((0, 4)), [], [], np.zeros((0, H, W), bool), NAMES, (H, W))
    with pytest.raises(ValueError, match="track_ids"):
        ZoneCounter([LineZone((0, 0), (1, 1))]).update(untracked)


def test_counts_read_per_class_on_the_video_and_in_the_summary():
    assert by_class({"star": 1, "circle": 2}) == "3 (2 circle, 1 star)" and by_class({}) == "0"
    counter = ZoneCounter([PolygonZone([(100, 0), (200, 0), (200, 120), (100, 120)], "z")])
    run(counter, [frame((1, 0, 10, 10, 30, 30), (2, 1, 10, 50, 30, 70)), frame((1, 0, 150, 10, 170, 30), (2, 1, 150, 50, 170, 70))])
    canvas = counter.draw(np.zeros((H, W, 3), np.uint8), "images")
    assert (canvas[-20:, :100] == (0, 215, 255)).all(-1).any()  # the panel line at the bottom "z: in 2 (1 a, 1 b)  out 0  inside 2 (1 a, 1 b)"
    assert counter.counts["images"]["z"]["in"] == {"a": 1, "b": 1}


def test_trails_follow_mask_centres_and_forget_lost_tracks():
    trails = Trails(length=3)
    for x in (10, 20, 30, 40):
        trails.update(frame((5, 0, x, 40, x + 10, 50)))
    canvas = trails.draw(np.zeros((H, W, 3), np.uint8), frame((5, 0, 40, 40, 50, 50)))
    drawn = canvas.any(-1)
    assert drawn[44, 25:45].all() and not drawn[44, :22].any()  # the last 3 centres: x 25, 35, 45
    for _ in range(4):
        trails.update(frame())  # track 5 unseen for longer than the trail
    assert not trails.draw(np.zeros((H, W, 3), np.uint8), frame((5, 0, 40, 40, 50, 50))).any()


def test_cli_track_counts_zones_and_lines_into_counts_json(tmp_path, monkeypatch):
    video = helpers.write_frames(tmp_path / "squares.avi", squares(30))
    monkeypatch.setattr(edgeseg.runtimes, "load", lambda *args, **kwargs: Runtime(BlobBackend()))
    out = tmp_path / "runs"
    args = ["track", "blobs.onnx", str(video), "--line", "gate:100,0 100,120", "--zone", "120,0 200,0 200,120 120,120", "--project", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"{video}: gate: in 1 (1 blob); out 1 (1 blob)" in result.output
    counts = json.loads((out / "track" / "counts.json").read_text())
    assert counts == {str(video): {"zone1": {"in": {"blob": 1}, "out": {"blob": 1}, "inside": {"blob": 1}},
                                   "gate": {"in": {"blob": 1}, "out": {"blob": 1}}}}  # fmt: skip
    capture = cv2.VideoCapture(str(out / "track" / "squares.mp4"))
    ok, last = None, None
    while (read := capture.read())[0]:
        last = read[1]
    capture.release()
    zone_colour = (np.abs(last.astype(int) - (0, 215, 255)).sum(-1) < 60)
    assert zone_colour[:, 99:102].mean() > 0.5  # the line is drawn on the saved video

    bad = CliRunner().invoke(main, ["track", "blobs.onnx", str(video), "--line", "0,0 5"])
    assert bad.exit_code == 2 and "every point is x,y" in bad.output


def test_the_python_api_records_what_the_cli_does(tmp_path):
    """TrackRecorder over Runtime.track: the counts of the CLI test above, trails on the frames, and the summary files."""
    recorder = TrackRecorder([parse_zone("gate:100,0 100,120", "line"), parse_zone("120,0 200,0 200,120 120,120", "zone")], trail=30)
    runtime = Runtime(BlobBackend())
    frames = [(result.plot(), recorder.annotate(result, result.plot())) for result in recorder.follow(runtime.track(squares(30)))]
    assert recorder.counts == {"images": {"gate": {"in": {"blob": 1}, "out": {"blob": 1}},
                                          "zone1": {"in": {"blob": 1}, "out": {"blob": 1}, "inside": {"blob": 1}}}}  # fmt: skip
    plain, annotated = frames[-1]
    line_colour = lambda image: (np.abs(image.astype(int) - (0, 215, 255)).sum(-1) < 60)[:, 99:102].mean()  # noqa: E731
    assert len(frames) == 30 and line_colour(annotated) > 0.5 > line_colour(plain)  # the gate is drawn by annotate only
    written = recorder.save(tmp_path / "run", runtime.last_tracks)
    assert [p.name for p in written] == ["tracks.json", "counts.json"]
    assert json.loads(written[0].read_text()) == runtime.last_tracks and json.loads(written[1].read_text()) == recorder.counts
    plain = TrackRecorder(trail=0)
    list(plain.follow(runtime.track(squares(3))))
    assert plain.counts == {} and [p.name for p in plain.save(tmp_path / "plain", runtime.last_tracks)] == ["tracks.json"]


@pytest.mark.parametrize(
    "text, kind, problem",
    [("0,0 5", "line", "every point is x,y"), ("0,0 5,5 9,9", "line", "a line needs 2 points, got 3"), ("a:b", "zone", "could not convert")],
)
def test_parse_zone_says_what_is_wrong(text, kind, problem):
    with pytest.raises(ValueError, match=problem):
        parse_zone(text, kind)
    assert parse_zone("dock:0,0 10,0 10,10", "zone").name == "dock" and parse_zone("0,0 9,9", "line", 3).name == "line3"
