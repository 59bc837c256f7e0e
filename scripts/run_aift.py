"""Shim: `accelerate launch scripts/run_aift.py RECIPE [--key value ...]` runs westwind.stages.aift."""

import sys

from westwind.stages.aift import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
