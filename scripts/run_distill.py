"""Shim: `python scripts/run_distill.py RECIPE [--key value ...]` runs westwind.stages.distill."""

import sys

from westwind.stages.distill import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
