"""Live sources: a local MJPEG stream the test serves itself, dropped mid-way, reconnected, strided, buffered or not."""

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.live import LiveOptions, is_live, live_sources
from edgeseg.runtimes.io.sources import resolve_source
from edgeseg.runtimes.runtime import Runtime

import helpers
from helpers import BlobBackend, MjpegServer


def numbered_frames(n: int) -> list[np.ndarray]:
    """``n`` (120, 200) gray frames; frame t has one white 14 px square at x = 10 + 5 t (its number, readable in the box)."""
    frames = []
    for t in range(n):
        frame = np.full((120, 200, 3), 114, np.uint8)
        frame[50:64, 10 + 5 * t : 24 + 5 * t] = 255
        frames.append(frame)
    return frames


def frame_number(result) -> int:
    """The number of the frame a result was made from, read off its one detection's box."""
    assert len(result) == 1
    return round((result.boxes[0, 0] - 10) / 5)


class SlowBlobs(BlobBackend):
    """BlobBackend that takes ``seconds`` per inference call, as a model slower than its camera."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def _forward(self, batch):
        import time

        time.sleep(self.seconds)
        return super()._forward(batch)


def test_live_source_names_and_streams_files(tmp_path):
    assert is_live(0) and is_live("0") and is_live("webcam1") and is_live("rtsp://cam/live") and is_live("HTTP://x/y.mjpg")
    assert not is_live(True) and not is_live("clip.mp4") and not is_live(np.zeros((2, 2), np.uint8))
    listing = tmp_path / "cams.streams"
    listing.write_text("# the yard\nrtsp://user:pw@10.0.0.5/live\n\n0\nhttp://cam2/stream.mjpg\n")
    assert live_sources(listing) == ["rtsp://user:pw@10.0.0.5/live", "webcam0", "http://cam2/stream.mjpg"]
    assert resolve_source([str(listing), "rtsp://other/x"]) == [("live", live_sources(listing) + ["rtsp://other/x"])]
    listing.write_text("rtsp://ok\nfile.mp4\n")
    with pytest.raises(EdgesegError, match=r"cams.streams:2: not a webcam index or rtsp/rtmp/http/https URL: 'file.mp4'"):
        live_sources(listing)
    listing.write_text("# nothing\n")
    with pytest.raises(EdgesegError, match="cams.streams: the streams file lists no sources"):
        resolve_source(str(listing))
    with pytest.raises(EdgesegError, match="missing.streams: cannot read the streams file"):
        resolve_source(str(tmp_path / "missing.streams"))
    with pytest.raises(EdgesegError, match="vid_stride must be a positive integer"):
        LiveOptions(vid_stride=0)


def test_stream_dropped_mid_way_reconnects_then_ends_with_the_results_so_far():
    with MjpegServer(numbered_frames(24), per_connection=8, connections=2) as server:
        runtime = Runtime(BlobBackend())
        results = list(runtime.predict(server.url, stream_buffer=True, reconnect=2))
    assert len(server.served) == 4  # two streams of 8 frames, then two attempts that find it gone
    assert [r.path for r in results] == [f"{server.url}#{i}" for i in range(16)]
    assert [frame_number(r) for r in results] == list(range(16))  # each result is the frame its path names
    assert runtime.last_ended == [f"{server.url}: stream lost after 2 reconnect attempt(s); 16 frame(s) read"]
    assert runtime.last_dropped == 0


def test_vid_stride_on_a_stream_and_on_a_video_file(tmp_path):
    with MjpegServer(numbered_frames(10), per_connection=10) as server:
        results = list(Runtime(BlobBackend()).predict(server.url, stream_buffer=True, reconnect=0, vid_stride=3))
    assert [r.path.rpartition("#")[2] for r in results] == ["0", "3", "6", "9"]
    assert [frame_number(r) for r in results] == [0, 3, 6, 9]
    video = helpers.write_frames(tmp_path / "clip.avi", numbered_frames(7))
    results = list(Runtime(BlobBackend()).predict(str(video), vid_stride=2))
    assert [r.path for r in results] == [f"{video}#{i}" for i in (0, 2, 4, 6)]
    assert [frame_number(r) for r in results] == [0, 2, 4, 6]


def test_slow_model_gets_the_newest_frame_unless_every_frame_is_buffered():
    frames = numbered_frames(30)
    with MjpegServer(frames, per_connection=30, interval=0.01) as server:
        runtime = Runtime(SlowBlobs(0.06))
        latest = list(runtime.predict(server.url, reconnect=0))
    numbers = [frame_number(r) for r in latest]
    assert numbers == sorted(set(numbers)) and len(numbers) < 20  # in order, most frames skipped
    assert runtime.last_dropped + len(latest) == 30  # each frame read was either processed or dropped, and counted
    with MjpegServer(frames, per_connection=30, interval=0.01) as server:
        every = list(runtime.predict(server.url, reconnect=0, stream_buffer=True))
    assert [frame_number(r) for r in every] == list(range(30)) and runtime.last_dropped == 0


def test_a_stream_that_never_opens_is_an_error_naming_it():
    with MjpegServer([], per_connection=0, connections=0) as server:
        runtime = Runtime(BlobBackend())
        with pytest.raises(EdgesegError, match=r"nothing readable in the source"):
            list(runtime.predict(server.url, reconnect=1))
    assert runtime.last_ended == [f"{server.url}: cannot open the stream after 1 reconnect attempt(s); 0 frame(s) read"]


def test_streams_file_reads_its_sources_together_each_with_its_own_tracker(tmp_path):
    with MjpegServer(numbered_frames(6), per_connection=6) as a, MjpegServer(numbered_frames(9), per_connection=9) as b:
        listing = tmp_path / "two.streams"
        listing.write_text(f"{a.url}\n{b.url.replace('stream.mjpg', 'other.mjpg')}\n")
        runtime = Runtime(BlobBackend())
        results = list(runtime.track(str(listing), stream_buffer=True, reconnect=0))
    sources = [r.path.rpartition("#")[0] for r in results]
    assert sources[:12:2] == [a.url] * 6 and sources[1:12:2] == [b.url.replace("stream.mjpg", "other.mjpg")] * 6  # in turn
    assert len(results) == 15 and sorted(runtime.last_tracks) == sorted(set(sources))
    assert [len(tracks) for tracks in runtime.last_tracks.values()] == [1, 1]  # one square, one track, in each stream


def test_cli_predict_on_a_stream_saves_its_video_and_reports_the_loss(tmp_path, monkeypatch):
    checkpoint = helpers.export_model(160).save(tmp_path / "m.pt")
    with MjpegServer(numbered_frames(12), per_connection=6, connections=1) as server:
        out = CliRunner().invoke(
            main, ["predict", str(checkpoint), server.url, "--stream-buffer", "--reconnect", "1", "--save-txt",
                   "--project", str(tmp_path), "--name", "live"],  # fmt: skip
        )
    assert out.exit_code == 0, out.output
    assert f"ended: {server.url}: stream lost after 1 reconnect attempt(s); 6 frame(s) read" in out.output
    video = tmp_path / "live" / "127.0.0.1_{}_stream.mjpg.mp4".format(server.url.split(":")[2].split("/")[0])
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 200
    capture.release()
    labels = sorted(p.name for p in (tmp_path / "live" / "labels").glob("*.txt"))
    assert len(labels) <= 6 and all(name.startswith("127.0.0.1_") for name in labels)
