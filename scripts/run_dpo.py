"""Shim: `accelerate launch scripts/run_dpo.py RECIPE [--key value ...]` runs westwind.stages.dpo."""

import sys

from westwind.stages.dpo import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
