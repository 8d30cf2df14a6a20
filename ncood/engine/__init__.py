"""The training engine: model, data, presets, the training loop and feature extraction."""
