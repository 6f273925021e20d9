"""Lookout: a camera-driven edge inference service with measured, labelled numbers."""

__version__ = "0.1.0"
