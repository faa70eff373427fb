"""Data sources: batch readers for the data layers (IDX, CIFAR, image lists and folders, HDF5, streams)."""
