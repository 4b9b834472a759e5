"""anyshot: few-shot image classification with any number of shots."""

__version__ = "0.1.0"
