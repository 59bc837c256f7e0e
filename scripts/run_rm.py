"""Shim: `accelerate launch scripts/run_rm.py RECIPE [--key value ...]` runs westwind.stages.rm."""

import sys

from westwind.stages.rm import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
