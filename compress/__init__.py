"""compress: a model-compression pipeline for small vision classifiers."""

__version__ = "0.1.0"
