"""Measurements of a model: MACs and parameters (latency and score come with the pipeline)."""
