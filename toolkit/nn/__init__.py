"""PyTorch networks: YOLO11 blocks, the Segment head, the model factory, checkpoints, ``load_network`` and the ``.pt`` backend (imports torch)."""
