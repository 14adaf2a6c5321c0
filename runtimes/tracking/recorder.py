"""What a tracking run keeps beside its frames: zone and line counts, trails, and its summary files.

``TrackRecorder`` is what ``edgeseg track`` does around ``Runtime.track``, for the Python API too::

    recorder = TrackRecorder([parse_zone("dock:0,0 200,0 200,120 0,120", "zone")], trail=30)
    for result in recorder.follow(runtime.track("clip.avi")):
        frame = recorder.annotate(result, result.plot())  # trails, zones and counts drawn
    recorder.counts  # {"clip.avi": {"dock": {"in": {...}, "out": {...}, "inside": {...}}}}
    recorder.save("runs/track/clip", runtime.last_tracks)  # tracks.json, counts.json
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edgeseg.runtimes.io.files import atomic_write_text
from edgeseg.runtimes.io.sources import sequence_of
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.runtimes.tracking.zones import Trails, ZoneCounter

TRACKS_FILE = "tracks.json"  # per sequence, one summary per track (``Track.summary``)
COUNTS_FILE = "counts.json"  # ``ZoneCounter.counts``, written when there are zones


class TrackRecorder:
    """Counts in zones and across lines, and trails, over a stream of tracked Results.

    Args:
        zones: PolygonZone and LineZone objects with distinct names; none: no counting.
        trail: frames of each track's path that ``annotate`` draws (0: none).

    Raises:
        ValueError: two zones with the same name.
    """

    def __init__(self, zones: Iterable = (), trail: int = 30):
        zones = list(zones)
        self.counter = ZoneCounter(zones) if zones else None
        self.trails = Trails(trail)

    def follow(self, results: Iterable[Results]) -> Iterator[Results]:
        """Yield each of ``results`` (``Runtime.track``'s, in order) after counting it and extending the trails."""
        for result in results:
            self.trails.update(result)
            if self.counter is not None:
                self.counter.update(result)
            yield result

    def annotate(self, result: Results, image: np.ndarray) -> np.ndarray:
        """``image`` (H, W, 3) uint8 BGR, ``result``'s frame already drawn, with its trails and the zones and counts drawn on."""
        self.trails.draw(image, result)
        return image if self.counter is None else self.counter.draw(image, sequence_of(result.path))

    @property
    def counts(self) -> dict:
        """``ZoneCounter.counts`` so far: sequence → zone → ``in``/``out``/``inside`` → class → count; ``{}`` without zones."""
        return {} if self.counter is None else self.counter.counts

    def save(self, folder: str | Path, tracks: dict) -> list[Path]:
        """Write ``tracks`` (``Runtime.last_tracks``) as TRACKS_FILE and, with zones, the counts as COUNTS_FILE, atomically.

        Returns:
            The paths written.
        """
        folder = Path(folder)
        written = [atomic_write_text(folder / TRACKS_FILE, json.dumps(tracks, indent=1) + "\n")]
        if self.counter is not None:
            written.append(atomic_write_text(folder / COUNTS_FILE, json.dumps(self.counts, indent=1) + "\n"))
        return written
