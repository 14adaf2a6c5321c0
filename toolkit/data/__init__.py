"""Datasets: the synthetic generator, YOLO-seg reading and augmentation (numpy + OpenCV, no torch)."""
