"""The distill stage: a teacher writes the dSFT data. Self-Instruct bootstrapping (instructions.py), a ROUGE-L
novelty filter (novelty.py), UltraChat-style dialogues (dialogues.py, asking westwind.aift.teacher), a quality filter
(quality.py), the stage's run/merge (run.py) and its recipe section (config.py). See docs/distill.md.
Kept free of imports: the recipe loads `westwind.distill.config`."""
