"""What an artifact says about itself: ModelMeta (edgeseg's JSON), the plain keys the YOLO ecosystem writes, and the size limits."""
