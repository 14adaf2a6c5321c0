"""Bring published weights and datasets in from other tools.

- :mod:`edgeseg.interop.ultralytics`: import an Ultralytics YOLO11-seg ``.pt`` without running
  code from it (a restricted unpickler) and without the ``ultralytics`` package (imports torch).
- :mod:`edgeseg.interop.coco`: convert COCO instance-segmentation JSON to YOLO-seg labels
  (numpy + OpenCV, no torch).

Import the submodule you need; this package imports neither, so the COCO converter stays torch-free.
"""
