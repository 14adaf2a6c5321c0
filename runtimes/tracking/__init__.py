"""Multi-object tracking on the runtime's detections, in numpy (``ByteTracker``), counting in zones (``ZoneCounter``) and a run's record (``TrackRecorder``)."""

from edgeseg.runtimes.tracking.byte_tracker import ByteTracker, Track, TrackerSettings
from edgeseg.runtimes.tracking.recorder import TrackRecorder
from edgeseg.runtimes.tracking.zones import LineZone, PolygonZone, Trails, ZoneCounter, parse_zone

__all__ = ["ByteTracker", "LineZone", "PolygonZone", "Track", "TrackRecorder", "TrackerSettings", "Trails", "ZoneCounter", "parse_zone"]
