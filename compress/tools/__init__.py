"""Backends of the single-purpose commands: bench, predict, eval, inspect, finetune, export."""
