"""Workflow components that the configs name (handlers, logs), the run-length codecs (``rle``), and the data side."""
