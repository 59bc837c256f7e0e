"""The recipe's `aift:` section (issue 3 fills this in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AIFTConfig:
    pass
