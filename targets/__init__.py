"""Exporters: checkpoint -> ONNX / OpenVINO / TFLite / TensorRT / CoreML, each verified against PyTorch."""
