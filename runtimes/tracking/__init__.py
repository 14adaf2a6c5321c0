"""Multi-object tracking on the runtime's detections, in numpy (``ByteTracker``)."""

from edgeseg.runtimes.tracking.byte_tracker import ByteTracker, Track, TrackerSettings

__all__ = ["ByteTracker", "Track", "TrackerSettings"]
