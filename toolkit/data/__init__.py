"""Training data: the synthetic generator, augmentation, the training Dataset and ``data check`` (numpy + OpenCV, no torch; reading YOLO-seg splits is ``edgeseg.runtimes.evaluation.labels``)."""
