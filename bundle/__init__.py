"""Workflow components that the configs name: handlers, logs; and the data side in ``nerveseg.bundle.data``."""
