"""The pipeline's stages, in order: one table mapping each stage to its module, and what a finished stage
leaves behind. Each module has `main(recipe)`, `cli(argv)` and `make_parser()`; run one with `python -m westwind.stages.NAME`
(or `accelerate launch -m westwind.stages.NAME`). Kept free of heavy imports: the CLI reads it to dispatch."""

from __future__ import annotations

STAGES = ("distill", "sft", "aift", "rm", "dpo", "eval")  # distill and rm are optional
TRAINING_STAGES = ("sft", "rm", "dpo")
MODULES = {stage: f"westwind.stages.{stage}" for stage in STAGES}
TITLES = {
    "distill": "Distill",
    "sft": "dSFT",
    "aift": "AIFT",
    "rm": "Reward model",
    "dpo": "dDPO",
    "eval": "Evaluation",
}
# What a finished stage leaves behind (any one of the names).
OUTPUTS = {
    "distill": ("dataset/dataset_dict.json",),
    "sft": ("config.json", "adapter_config.json"),
    "aift": ("dataset/dataset_dict.json",),
    "rm": ("metrics.json",),  # written last, after the model
    "dpo": ("config.json", "adapter_config.json"),
    "eval": ("results.json",),
}
