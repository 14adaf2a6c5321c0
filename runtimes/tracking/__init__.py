"""Multi-object tracking on the runtime's detections, in numpy (``ByteTracker``), and counting in zones (``ZoneCounter``)."""

from edgeseg.runtimes.tracking.byte_tracker import ByteTracker, Track, TrackerSettings
from edgeseg.runtimes.tracking.zones import LineZone, PolygonZone, Trails, ZoneCounter

__all__ = ["ByteTracker", "LineZone", "PolygonZone", "Track", "TrackerSettings", "Trails", "ZoneCounter"]
