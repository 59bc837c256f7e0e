"""Shim: `accelerate launch scripts/run_eval.py RECIPE [--key value ...]` runs westwind.stages.eval."""

import sys

from westwind.stages.eval import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
