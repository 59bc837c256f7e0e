"""The AIFT stage: prompts -> candidates from a pool of generators -> teacher ratings -> preference pairs.
Resumable and shardable; see westwind.aift.workspace for the files and the keys that decide reuse.

    generate    candidates, journaled per prompt          rate     judgments, journaled per prompt
    workspace   layout, keys, reuse                       stats    stats.json and the summary
    run         run_shard / merge / rebinarize, outputs   (westwind.binarize: pairs from ratings)
"""

from westwind.aift.run import AIFTError, merge, rebinarize, run_shard
from westwind.aift.stats import summary
from westwind.aift.workspace import Workspace

__all__ = ["AIFTError", "Workspace", "merge", "rebinarize", "run_shard", "summary"]
