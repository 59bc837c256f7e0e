"""The whole Zephyr recipe in one command: dSFT -> AIFT -> dDPO -> eval, then the report.

    python scripts/run_recipe.py recipes/demo-cpu.yaml [--from dpo] [--to eval] [--force]

Same as `westwind run`. Each stage can still be launched alone (e.g. `accelerate launch scripts/run_dpo.py R`).
"""

import sys

from westwind.pipeline import main

if __name__ == "__main__":
    main(sys.argv[1:])
