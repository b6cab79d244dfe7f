"""Imaging pre-processing: DICOM header parsing, de-identification and thumbnails on Spark."""
