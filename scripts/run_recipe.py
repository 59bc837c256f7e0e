"""Shim: the whole recipe in one command (dSFT -> AIFT -> dDPO -> eval, then the report); same as `westwind run`."""

import sys

from westwind.pipeline import main

if __name__ == "__main__":
    main(sys.argv[1:])
