"""`make bench`: every westwind benchmark in turn; each prints its table and writes benchmarks/results/*.json.

python benchmarks/run_all.py [sft dpo aift]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` as a package from any cwd

from benchmarks import bench_aift, bench_dpo, bench_sft  # noqa: E402

BENCHMARKS = {"sft": bench_sft.main, "dpo": bench_dpo.main, "aift": bench_aift.main}


def main(argv: list[str]) -> None:
    for name in argv or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        BENCHMARKS[name]([])


if __name__ == "__main__":
    main(sys.argv[1:])
