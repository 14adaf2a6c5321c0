"""Torch-free runtime: load any edgeseg artifact and run predict/val with numpy + OpenCV + one backend."""
