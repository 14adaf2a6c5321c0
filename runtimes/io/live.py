"""Live sources: webcams, ``rtsp://``/``rtmp://``/``http(s)://`` streams and ``.streams`` lists of them.

Each live source is read by its own background thread (``LiveReader``) so a slow model never
stalls the capture. With ``stream_buffer=False`` (the default) a reader keeps only the newest
frame and the model always gets the latest one (the frames it had no time for are dropped and
counted); with ``stream_buffer=True`` every frame is kept, up to ``BUFFER_FRAMES`` waiting, and
the reader waits for the model when the buffer is full.

A stream that stops giving frames (a camera unplugged, a server gone) is reopened up to
``reconnect`` times in a row, ``reconnect_delay`` s apart; then it ends with a warning naming it
and the frames read so far, and the results so far stand. Several sources (a ``.streams``
file) are read at once and their frames taken in turn, one from each. A frame's path is
``"<source>#<frame index>"``, the index counting every frame the source delivered (strided or
dropped ones included); a webcam's source name is ``webcam<index>``.

Imports nothing of edgeseg outside ``edgeseg.runtimes``, and never torch.
"""

import logging
import re
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.runtimes.errors import EdgesegError, os_reason
from edgeseg.runtimes.io.images import MAX_IMAGE_PIXELS

LOGGER = logging.getLogger("edgeseg")

LIVE_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://")
STREAMS_SUFFIX = ".streams"
BUFFER_FRAMES = 30  # frames a reader keeps waiting with stream_buffer=True
_WEBCAM = re.compile(r"webcam(\d+)")


@dataclass(frozen=True)
class LiveOptions:
    """How live sources are read.

    Attributes:
        stream_buffer: keep every frame (True) or only the newest (False: a slow model skips frames).
        reconnect: attempts to reopen a lost stream before it ends (0: end at once).
        reconnect_delay: seconds between those attempts.
        timeout: seconds OpenCV waits to open a network stream or for its next packet.
        vid_stride: take every ``vid_stride``-th frame of a video or stream (1: all).
    """

    stream_buffer: bool = False
    reconnect: int = 3
    reconnect_delay: float = 1.0
    timeout: float = 10.0
    vid_stride: int = 1

    def __post_init__(self):
        if not isinstance(self.vid_stride, int) or self.vid_stride < 1:
            raise EdgesegError(f"vid_stride must be a positive integer, got {self.vid_stride!r}")
        if not isinstance(self.reconnect, int) or self.reconnect < 0:
            raise EdgesegError(f"reconnect must be an integer >= 0, got {self.reconnect!r}")
        if not self.reconnect_delay >= 0 or not self.timeout > 0:
            raise EdgesegError(f"reconnect_delay must be >= 0 and timeout > 0 s, got {self.reconnect_delay!r}, {self.timeout!r}")


def is_live(source) -> bool:
    """Whether ``source`` names a live source: a webcam index (int, ``"0"``, ``"webcam0"``), a stream URL or a ``.streams`` file."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return source >= 0
    if not isinstance(source, (str, Path)):
        return False
    text = str(source)
    return (
        text.lower().startswith(LIVE_SCHEMES)
        or bool(_WEBCAM.fullmatch(text))
        or (text.isdecimal() and not Path(text).exists())
        or text.lower().endswith(STREAMS_SUFFIX)
    )


def live_name(source) -> str:
    """The name frames of ``source`` carry: ``webcam<index>`` for a webcam, else the URL."""
    text = str(source)
    return f"webcam{int(text)}" if text.isdecimal() else text


def is_live_name(name: str) -> bool:
    """Whether a frame's source name (the part of its path before ``#``) is a live source's."""
    return name.lower().startswith(LIVE_SCHEMES) or bool(_WEBCAM.fullmatch(name))


def live_sources(source) -> list[str]:
    """The live source names (see ``live_name``) that ``source`` stands for: one, or each line of a ``.streams`` file.

    A ``.streams`` file lists one webcam index or URL per line; blank lines and lines starting
    with ``#`` are ignored.

    Raises:
        EdgesegError: an unreadable or empty ``.streams`` file, or a line in it that is not a
            webcam index or stream URL (the message names the file and line).
    """
    text = str(source)
    if not text.lower().endswith(STREAMS_SUFFIX):
        return [live_name(source)]
    try:
        lines = Path(text).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"{text}: cannot read the streams file ({os_reason(exc)})") from None
    names = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not (line.isdecimal() or line.lower().startswith(LIVE_SCHEMES) or _WEBCAM.fullmatch(line)):
            raise EdgesegError(f"{text}:{number}: not a webcam index or {'/'.join(s[:-3] for s in LIVE_SCHEMES)} URL: {line!r}")
        names.append(live_name(_WEBCAM.sub(r"\1", line)))
    if not names:
        raise EdgesegError(f"{text}: the streams file lists no sources")
    return names


def _open(name: str, timeout: float):
    """An opened ``cv2.VideoCapture`` of a live source, or None when it cannot be opened."""
    match = _WEBCAM.fullmatch(name)
    if match:
        capture = cv2.VideoCapture(int(match.group(1)))
    else:
        ms = int(timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        capture = cv2.VideoCapture(name, cv2.CAP_FFMPEG, params)
    if capture.isOpened():
        return capture
    capture.release()
    return None


class LiveReader:
    """Reads one live source on a background thread; ``next_frame`` hands out its frames.

    Args:
        name: the source (``live_name``).
        options: LiveOptions.

    Attributes:
        frames_read: frames the source delivered so far (strided ones included).
        dropped: frames replaced by a newer one before the model took them (``stream_buffer=False``).
        ended: why the source ended (a one-line message), or None while it runs or after ``close``.
    """

    def __init__(self, name: str, options: LiveOptions):
        self.name, self.options = name, options
        self.frames_read = self.dropped = 0
        self.ended: str | None = None
        self._frames: deque = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=f"edgeseg-live-{name}", daemon=True)
        self._thread.start()

    def next_frame(self) -> tuple[int, np.ndarray] | None:
        """The next (frame index, (H, W, 3) uint8 BGR frame), waiting for it; None once the source has ended."""
        with self._ready:
            self._ready.wait_for(lambda: self._frames or self._done)
            if not self._frames:
                return None
            entry = self._frames.popleft()
            self._ready.notify_all()
            return entry

    def close(self) -> None:
        """Stop reading and release the source (waits for the reader thread)."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        self._thread.join()

    def _deliver(self, index: int, frame: np.ndarray) -> None:
        """Queue a frame: wait for room with ``stream_buffer``, else replace a frame not yet taken."""
        with self._ready:
            if self.options.stream_buffer:
                self._ready.wait_for(lambda: len(self._frames) < BUFFER_FRAMES or self._stop.is_set())
            elif self._frames:
                self._frames.clear()
                self.dropped += 1
            self._frames.append((index, frame))
            self._ready.notify_all()

    def _finish(self, message: str | None) -> None:
        """Mark the source ended (``message`` says why; None when it was closed)."""
        with self._ready:
            self.ended, self._done = message, True
            self._ready.notify_all()

    def _run(self) -> None:
        """The reader thread: open, read, reopen a lost source up to ``reconnect`` times in a row."""
        options, capture, failures = self.options, None, 0
        try:
            while not self._stop.is_set():
                if capture is None:
                    capture = _open(self.name, options.timeout)
                    if capture is not None:
                        w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
                        if w * h > MAX_IMAGE_PIXELS:
                            self._finish(f"{self.name}: frames of {w} x {h} pixels, more than the {MAX_IMAGE_PIXELS:,}-pixel limit")
                            return
                if capture is not None and capture.grab():
                    failures = 0
                    index, self.frames_read = self.frames_read, self.frames_read + 1
                    if index % options.vid_stride == 0:
                        ok, frame = capture.retrieve()
                        if ok and frame is not None:
                            self._deliver(index, frame)
                    continue
                what = "cannot open the stream" if capture is None and not self.frames_read else "stream lost"
                if capture is not None:
                    capture.release()
                    capture = None
                failures += 1
                if failures > options.reconnect:
                    tries = f" after {options.reconnect} reconnect attempt(s)" if options.reconnect else ""
                    self._finish(f"{self.name}: {what}{tries}; {self.frames_read} frame(s) read")
                    return
                LOGGER.warning(
                    f"{self.name}: {what} after {self.frames_read} frame(s); "
                    f"reconnecting in {options.reconnect_delay:g} s (attempt {failures} of {options.reconnect})"
                )
                self._stop.wait(options.reconnect_delay)
            self._finish(None)
        finally:
            if capture is not None:
                capture.release()
            if not self._done:
                self._finish(f"{self.name}: reader stopped")


class LiveFrames:
    """``("<source>#<frame index>", frame)`` pairs from several live sources read at once, one from each in turn.

    Args:
        names: the sources (``live_sources``).
        options: LiveOptions.

    Attributes:
        ended: the message of each source that ended by itself (lost, or never opened).
        dropped: stale frames dropped, over all sources.
    """

    def __init__(self, names: list[str], options: LiveOptions):
        self.names, self.options = names, options
        self.ended: list[str] = []
        self.dropped = 0

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        readers = [LiveReader(name, self.options) for name in self.names]
        try:
            while readers:
                for reader in list(readers):
                    entry = reader.next_frame()
                    if entry is None:
                        readers.remove(reader)
                        self._end(reader)
                        continue
                    yield f"{reader.name}#{entry[0]}", entry[1]
        finally:
            for reader in readers:
                reader.close()
                self._end(reader)

    def _end(self, reader: LiveReader) -> None:
        """Record how one reader ended: its message (logged) and its dropped frames."""
        self.dropped += reader.dropped
        if reader.dropped:
            LOGGER.info(f"{reader.name}: {reader.dropped} stale frame(s) dropped (stream_buffer=True keeps every frame)")
        if reader.ended:
            self.ended.append(reader.ended)
            LOGGER.warning(reader.ended)
