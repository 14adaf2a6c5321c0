"""read_ahead: the batch loop's background producer keeps order, raises in place and stops with its consumer."""

import threading
import time

import pytest

from edgeseg.runtimes.loop import read_ahead


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
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 3 + 2  # at most the queue and the item in hand beyond what was taken
    assert not any(t.name == "edgeseg-read-ahead" and t.is_alive() for t in threading.enumerate())


def _raise(exc):
    raise exc
    yield


def test_an_empty_source_ends_at_once():
    assert list(read_ahead(iter(()))) == []
