"""The recipe's `eval:` section (issue 4 fills this in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalConfig:
    pass
