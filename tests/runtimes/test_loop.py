"""read_ahead and the pipelined stream: order kept, errors raised in place, threads stopped with their consumer, results identical to the sequential loop."""

import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

import edgeseg.runtimes
from edgeseg.cli import main
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.pipeline.loop import read_ahead
from edgeseg.runtimes.runtime import Runtime

import helpers
from helpers import BlobBackend, squares


def test_items_arrive_in_order_from_another_thread_after_the_first():
    threads = []

    def numbers():
        for i in range(50):
            threads.append(threading.current_thread())
            yield i

    assert list(read_ahead(numbers())) == list(range(50))
    assert threads[0] is threading.current_thread()  # a single image costs no thread
    assert threading.current_thread() not in threads[1:]


def test_a_single_item_starts_no_thread():
    before = threading.active_count()
    stream = read_ahead(iter([7]))
    assert next(stream) == 7
    assert threading.active_count() == before
    assert list(stream) == []


def test_a_producer_error_is_raised_at_its_place():
    def failing():
        yield 1
        yield 2
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="first"):
        next(read_ahead(_raise(ValueError("first"))))

    got = []
    with pytest.raises(ValueError, match="bad frame"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1, 2]


def test_the_producer_stops_when_the_consumer_does():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = read_ahead(endless(), depth=1)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # joins the producer
    assert not any(t.name == "edgeseg-read-ahead" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 3 + 2  # a joined producer makes no more: at most the queue and the item in hand beyond what was taken


def _raise(exc):
    raise exc
    yield


def test_an_empty_source_ends_at_once():
    assert list(read_ahead(iter(()))) == []


class JitteryBlobs(BlobBackend):
    """BlobBackend that takes a random 0-4 ms per call and logs when each call starts, which thread makes it and how many run at once.

    With ``concurrent``, the first call waits (up to 30 s) for a second one to start, so two run at
    once whenever the runtime lets them, however loaded the machine is.
    """

    def __init__(self, fail_at: int | None = None, concurrent: bool = False):
        super().__init__()
        self.rng = np.random.default_rng(0)
        self.calls: list[tuple[float, str]] = []
        self.fail_at = fail_at
        self.concurrent = concurrent
        self.lock, self.running, self.most_at_once = threading.Lock(), 0, 0
        self.second_call = threading.Event()

    def _forward(self, batch):
        with self.lock:
            if len(self.calls) == self.fail_at:
                raise EdgesegError("inference failed on purpose")
            self.calls.append((time.perf_counter(), threading.current_thread().name))
            first = len(self.calls) == 1
            if len(self.calls) == 2:
                self.second_call.set()
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            pause = self.rng.uniform(0, 0.004)
        if first and self.concurrent:  # hold the first call until a second one runs beside it (when the runtime allows it)
            self.second_call.wait(timeout=30)
        time.sleep(pause)
        try:
            return super()._forward(batch)
        finally:
            with self.lock:
                self.running -= 1


def _same(a, b) -> None:
    assert [r.path for r in a] == [r.path for r in b]
    for x, y in zip(a, b):
        for field in ("boxes", "scores", "classes", "masks"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


def test_pipelined_results_are_the_sequential_ones_in_source_order(tmp_path):
    frames = squares(25)
    video = helpers.write_frames(tmp_path / "clip.avi", frames)
    for source, n in ((frames, 25), (str(video), 25), ([str(video), frames[0]], 26)):
        sequential = list(Runtime(JitteryBlobs()).predict(source, pipeline=False))
        assert len(sequential) == n and sum(map(len, sequential)) > 0
        for batch, concurrent in ((1, False), (3, False), (1, True)):
            backend = JitteryBlobs(concurrent=concurrent)
            pipelined = list(Runtime(backend).predict(source, pipeline=True, batch=batch))
            _same(pipelined, sequential)
            assert backend.most_at_once == (2 if concurrent and len(sequential) > 2 else 1)  # two frames in flight when allowed


class CountedBlobs(BlobBackend):
    """BlobBackend that records which thread makes each call and sets ``started[i]`` when call i begins."""

    def __init__(self, calls: int):
        super().__init__()
        self.threads: list[str] = []
        self.started = [threading.Event() for _ in range(calls + 1)]

    def _forward(self, batch):
        self.threads.append(threading.current_thread().name)
        self.started[min(len(self.threads) - 1, len(self.started) - 1)].set()
        return super()._forward(batch)


def test_the_next_inference_runs_while_the_caller_works_on_a_result():
    """Pipelined, frame k + 1 is inferred on another thread while the caller still holds result k; not so sequentially."""
    backend = CountedBlobs(12)
    for k, _ in enumerate(Runtime(backend).predict(squares(12), pipeline=True)):
        if k + 1 < 12:
            assert backend.started[k + 1].wait(timeout=30), f"frame {k + 1} was not inferred while the caller held frame {k}"
    assert len(backend.threads) == 12 and all(thread.startswith("edgeseg-run-ahead") for thread in backend.threads[2:])

    backend = CountedBlobs(12)
    for k, _ in enumerate(Runtime(backend).predict(squares(12), pipeline=False)):
        assert len(backend.threads) == k + 1  # sequential: one step at a time
    assert set(backend.threads) == {threading.current_thread().name}


def test_stopping_a_pipelined_stream_stops_every_stage_thread():
    stream = Runtime(JitteryBlobs()).predict(squares(100), pipeline=True)
    assert len([next(stream) for _ in range(3)]) == 3
    stream.close()
    assert not any(t.name.startswith("edgeseg-") and t.is_alive() for t in threading.enumerate())


def test_an_inference_error_in_the_pipeline_is_raised_after_the_results_before_it():
    got = []
    with pytest.raises(EdgesegError, match="on purpose"):
        for result in Runtime(JitteryBlobs(fail_at=5)).predict(squares(20), pipeline=True):
            got.append(result)
    assert len(got) == 5
    assert not any(t.name.startswith("edgeseg-") and t.is_alive() for t in threading.enumerate())


def test_cli_predict_writes_the_same_labels_with_and_without_the_pipeline(tmp_path, monkeypatch):
    video = helpers.write_frames(tmp_path / "clip.avi", squares(12))
    monkeypatch.setattr(edgeseg.runtimes, "load", lambda *args, **kwargs: Runtime(JitteryBlobs()))
    labels = {}
    for flag in ("--pipeline", "--no-pipeline"):
        args = ["predict", "blobs.onnx", str(video), "--save-txt", "--no-save", "--project", str(tmp_path), "--name", flag]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "12 images, 36 detections" in result.output
        labels[flag] = {p.name: p.read_text() for p in (tmp_path / flag / "labels").iterdir()}
    assert len(labels["--pipeline"]) == 12 and labels["--pipeline"] == labels["--no-pipeline"]
