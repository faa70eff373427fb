"""What netdef does with a net besides training it: summary tables, timing, ONNX export, ten-crop testing."""
