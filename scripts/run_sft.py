"""Shim: `accelerate launch scripts/run_sft.py RECIPE [--key value ...]` runs westwind.stages.sft."""

import sys

from westwind.stages.sft import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
