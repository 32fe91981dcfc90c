"""Darknet models: cfg parsing, the network, darknet .weights, and checkpoint conversion."""
