"""PyTorch modules: YOLO11 blocks, the Segment head, the model factory, checkpoints (imports torch)."""
