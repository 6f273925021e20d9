"""Vision: frame sources, preprocessing to a model's input tensor, and output decoders."""
