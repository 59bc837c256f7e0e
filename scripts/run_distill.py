"""Shim: `python scripts/run_distill.py RECIPE [--key value ...]` runs westwind.stages.distill."""

import sys

from westwind.stages.distill import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
