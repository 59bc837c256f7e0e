"""Shim: `accelerate launch scripts/run_eval.py RECIPE [--key value ...]` runs westwind.stages.eval."""

import sys

from westwind.stages.eval import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
