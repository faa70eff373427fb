"""Caffe's own file formats (prototxt)."""
