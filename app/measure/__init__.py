"""Measurement: latency histograms, power meters and energy, device health, `lookout bench`."""
