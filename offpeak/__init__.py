"""offpeak: off-peak LLM inference, run where and when the grid is cleanest."""

__version__ = "0.1.0"
