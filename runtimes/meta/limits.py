"""Sizes edgeseg refuses before allocating anything for them: an input past a limit gets one error line.

Each limit sits far above what a YOLO11-seg user needs and far below what would exhaust a
device's memory; the same numbers apply to the command line, the Python API and the metadata
read from artifacts and checkpoints.
"""

MAX_IMGSZ = 4096  # px, the largest model input side (train, predict, val, export, artifact metadata)
MAX_CLASSES = 10_000  # class names / nc of a model or dataset
MAX_NAME_CHARS = 256  # characters of one class name
MAX_METADATA_BYTES = 1 << 20  # bytes of the ModelMeta JSON embedded in an artifact
MAX_DETECTIONS = 10_000  # detections per image an end-to-end artifact may report (ModelMeta.nms max_det)
