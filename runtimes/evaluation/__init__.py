"""Validation on the device: YOLO-seg labels and their cache, box and mask mAP, and the val loop."""
