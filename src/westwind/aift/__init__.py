"""The AIFT stage: prompts -> candidates from a pool of generators -> teacher ratings -> preference pairs.
Resumable and shardable; see westwind.aift.workspace for the files and the keys that decide reuse.

    config        the recipe's `aift:` section        prompts       the prompt pool, shards, decontamination
    generate      candidates, journaled per prompt    principles    UltraFeedback's principles, system prompts
    rate          judgments, journaled per prompt     binarize      pairs from ratings
    revise        Constitutional-AI revision pairs    constitution  the default constitution, critique/revision
    teacher       models asked request by request     workspace     layout, keys, reuse
    stats         stats.json and the summary          run           run_shard / merge / rebinarize, outputs

Kept free of imports: the recipe loads `westwind.aift.config`.
"""
