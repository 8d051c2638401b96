"""lth: find lottery tickets in neural networks, test them against controls, and report them."""

__version__ = "0.1.0"
