"""Shim: `accelerate launch scripts/run_sft.py RECIPE [--key value ...]` runs westwind.stages.sft."""

import sys

from westwind.stages.sft import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
