"""groupwise: GRPO and its modern variants with rewards a program can verify."""

__version__ = "0.1.0"
