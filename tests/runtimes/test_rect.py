"""``rect``: a dynamic model's input padded only to a multiple of the stride (Ultralytics' minimal letterbox)."""

import dataclasses

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import edgeseg.runtimes
from edgeseg.cli import main
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.pipeline.preprocess import rect_shape
from edgeseg.runtimes.runtime import Runtime

from helpers import BlobBackend, squares


@pytest.mark.parametrize(
    "source, shape, expected",
    [
        ((200, 300), (128, 128), (96, 128)),  # 300 x 200 -> 128 x 85, rounded up to 96 rows
        ((200, 300), (160, 160), (128, 160)),  # -> 160 x 107: 128 rows
        ((240, 180), (160, 160), (160, 128)),  # portrait -> 120 x 160: 128 columns
        ((480, 640), (640, 640), (480, 640)),  # 480 is already a multiple of 32
        ((100, 100), (160, 160), (160, 160)),  # square images gain nothing
        ((10, 1000), (320, 320), (32, 320)),  # a sliver keeps one stride
    ],
)
def test_rect_shape_known_answers(source, shape, expected):
    assert rect_shape(source, shape, 32) == expected


class DynamicBlobs(BlobBackend):
    """BlobBackend marked dynamic (any input size and batch), recording the input shape of every call."""

    def __init__(self):
        super().__init__()
        self.meta = dataclasses.replace(self.meta, dynamic=True, batch=0)
        self.shapes: list[tuple[int, ...]] = []

    def _forward(self, batch):
        self.shapes.append(batch.shape)
        return super()._forward(batch)


def test_rect_runs_the_smaller_input_and_finds_the_same_objects():
    frames = squares(6)  # (120, 200): at 160, 160 x 96
    square, rect = DynamicBlobs(), DynamicBlobs()
    expected = list(Runtime(square).predict(frames, imgsz=160))
    got = list(Runtime(rect).predict(frames, imgsz=160, rect=True))
    assert set(square.shapes) == {(1, 3, 160, 160)} and set(rect.shapes) == {(1, 3, 96, 160)}
    for a, b in zip(got, expected):
        assert len(a) == len(b) == 3
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)  # source px; the blobs are the squares either way
        assert all((m1 ^ m2).sum() <= 0.1 * m2.sum() for m1, m2 in zip(a.masks, b.masks))


def test_a_batch_of_differently_shaped_images_keeps_the_square_input():
    backend = DynamicBlobs()
    wide, tall = squares(3)[1], np.ascontiguousarray(squares(3)[1].transpose(1, 0, 2))
    results = list(Runtime(backend).predict([wide, tall, wide, wide], imgsz=160, rect=True, batch=2))
    assert backend.shapes == [(2, 3, 160, 160), (2, 3, 96, 160)]
    assert [len(r) for r in results] == [3, 3, 3, 3]


def test_rect_on_a_static_model_is_a_one_line_error():
    with pytest.raises(EdgesegError, match="rect needs a dynamic model; this one is exported for a fixed 160x160 input"):
        Runtime(BlobBackend()).predict(squares(3), rect=True, stream=False)


def test_cli_predict_rect_writes_what_predict_rect_gives(tmp_path, monkeypatch):
    backends = []

    def load(*args, **kwargs):
        backends.append(DynamicBlobs())
        return Runtime(backends[-1])

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), squares(3)[1])
    monkeypatch.setattr(edgeseg.runtimes, "load", load)
    args = ["predict", "blobs.pt", str(image), "--imgsz", "160", "--rect", "--save-txt", "--no-save", "--project", str(tmp_path), "--name", "p"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert backends[0].shapes == [(1, 3, 96, 160)]
    lines = (tmp_path / "p" / "labels" / "frame.txt").read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == ["0", "0", "0"]
