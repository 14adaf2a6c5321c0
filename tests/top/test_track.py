"""``Runtime.track`` and ``edgeseg track``: ids that follow moving objects, per-video trackers, summaries, saved ids, settings files."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.runtimes import load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.runtimes.runtime import Runtime
from edgeseg.runtimes.tracking import TrackerSettings

import helpers
from helpers import BlobBackend, position, squares

IMGSZ = 160
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The calibrated model's checkpoint (it finds the synthetic shapes)."""
    return helpers.export_model(IMGSZ).save(tmp_path_factory.mktemp("track") / "m.pt")


@pytest.mark.parametrize("association", ["box", "mask"])
def test_ids_follow_crossing_objects(association):
    runtime = Runtime(BlobBackend())
    n = 30
    results = runtime.track(squares(n), tracker=TrackerSettings(association=association), stream=False)
    path_of = {}
    for t, result in enumerate(results):
        assert len(result) == 3
        for box, track_id in zip(result.boxes, result.track_ids):
            path = min(range(3), key=lambda p: np.hypot(*np.subtract(position(p, t, n), box[:2])))
            assert np.hypot(*np.subtract(position(path, t, n), box[:2])) <= 1.5
            assert path_of.setdefault(int(track_id), path) == path, f"frame {t}: id {track_id} jumped to another object"
    assert sorted(path_of) == [1, 2, 3]
    summaries = runtime.last_tracks["images"]
    assert [s["frames_seen"] for s in summaries] == [n] * 3
    assert all(s["mean_mask_area"] == pytest.approx(196, rel=0.1) for s in summaries)  # each mask is its 14 px square


def test_each_video_gets_its_own_tracker_and_masks_can_associate(checkpoint, tmp_path):
    clips = [helpers.write_video(tmp_path / f"{name}.avi", (2, 0, 240, 150), 6, fourcc="MJPG") for name in ("a", "b")]
    runtime = load(checkpoint)
    results = runtime.track([str(c) for c in clips], tracker=TrackerSettings(association="mask"), stream=False)
    assert len(results) == 12 and sorted(runtime.last_tracks) == sorted(str(c) for c in clips)
    a, b = (runtime.last_tracks[str(c)] for c in clips)
    assert [s["id"] for s in a][:3] == [1, 2, 3] and [s["id"] for s in b][:3] == [1, 2, 3]  # ids restart per video
    assert min(results[0].track_ids) == 1 and min(results[6].track_ids) == 1


def test_results_carry_ids_through_subset_json_txt_and_plot(tmp_path):
    mask = np.zeros((2, 20, 30), bool)
    mask[0, 2:8, 3:9] = mask[1, 10:18, 10:25] = True
    result = Results([[3, 2, 9, 8], [10, 10, 25, 18]], [0.9, 0.4], [0, 1], mask, {0: "a", 1: "b"}, (20, 30), track_ids=[7, 9])
    kept = result.subset(np.array([False, True]))
    assert kept.track_ids.tolist() == [9] and kept.scores.tolist() == pytest.approx([0.4])
    assert [d["track_id"] for d in json.loads(result.to_json())] == [7, 9]
    result.save_txt(tmp_path / "a.txt")
    assert [line.split()[-1] for line in (tmp_path / "a.txt").read_text().splitlines()] == ["7", "9"]
    with pytest.raises(ValueError, match="2 boxes, 1 track ids"):
        Results(result.boxes, result.scores, result.classes, mask, result.names, (20, 30), track_ids=[1])


def test_tracker_settings_files(tmp_path):
    good = tmp_path / "t.yaml"
    good.write_text("track_buffer: 60\nassociation: mask\nhigh_score: 0.5\n")
    assert TrackerSettings.from_yaml(good) == TrackerSettings(track_buffer=60, association="mask", high_score=0.5)
    for text, message in (
        ("track_bufer: 60\n", "unknown tracker setting 'track_bufer'"),
        ("track_buffer: 2.5\n", "track_buffer must be a int"),
        ("fuse_score: 1\n", "fuse_score must be a bool"),
        ("- 1\n", "must be a mapping"),
        ("low_score: 0.6\n", "low_score <= high_score"),
    ):
        good.write_text(text)
        with pytest.raises(EdgesegError, match=f"{good}: .*{message}"):
            TrackerSettings.from_yaml(good)


def test_cli_track_saves_ids_and_summaries(checkpoint, tmp_path):
    clip = helpers.write_video(tmp_path / "clip.avi", (2, 0, 240, 150), 6, fourcc="MJPG")
    settings = tmp_path / "tracker.yaml"
    settings.write_text("track_buffer: 10\n")
    args = ["track", str(checkpoint), str(clip), "--tracker", str(settings), "--association", "mask", "--save-txt"]
    done = CliRunner().invoke(main, [*args, "--project", str(tmp_path), "--name", "t"])
    assert done.exit_code == 0, done.output
    tracks = json.loads((tmp_path / "t" / "tracks.json").read_text())[str(clip)]
    assert f"{clip}: {len(tracks)} tracks" in done.output and len(tracks) >= 5
    labels = sorted((tmp_path / "t" / "labels").iterdir())
    assert len(labels) == 6
    ids = {int(line.split()[-1]) for line in labels[0].read_text().splitlines()}
    assert ids and ids <= {t["id"] for t in tracks}
    video = cv2.VideoCapture(str(next((tmp_path / "t").glob("clip*.*"))))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    again = CliRunner().invoke(main, [*args, "--project", str(tmp_path), "--name", "t", "--exist-ok", "--no-save"])
    assert again.exit_code == 0 and f"results saved to {tmp_path / 't'}" in again.output
    numbered = CliRunner().invoke(main, [*args, "--project", str(tmp_path), "--name", "t", "--no-save"])
    assert numbered.exit_code == 0 and f"results saved to {tmp_path / 't2'}" in numbered.output
    bad = CliRunner().invoke(main, ["track", str(checkpoint), str(clip), "--tracker", str(tmp_path / "none.yaml")])
    assert bad.exit_code == 1 and "none.yaml: YAML file not found" in bad.output
