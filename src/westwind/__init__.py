"""westwind: Zephyr-style distillation recipes (dSFT -> AIFT -> dDPO) around TRL."""

import logging

__version__ = "0.1.0"

# bitsandbytes logs a warning on every import on AVX512-BF16 CPUs when the optional `kernels` hub package
# (which fetches code from the Hub) is absent; its fallback kernel works, so the line is only noise.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
