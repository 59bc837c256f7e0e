"""westwind: Zephyr-style distillation recipes (dSFT -> AIFT -> dDPO) around TRL."""

__version__ = "0.1.0"
