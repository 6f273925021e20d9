"""Rebuild .tflite models as torch modules and export them (.pte, .ptl, int8). Heavy imports are lazy."""
