"""vita-mini: a minimal, readable reimplementation of VITA-Audio (arXiv 2505.03739) in PyTorch."""

__version__ = "0.1.0"
