"""Reading a pairwise verdict (A, B or tie) only where a format puts one, never from prose:

- a JSON object's `winner` field ("A", "B" or "tie", any case), also in JSON cut short;
- an MT-Bench tag `[[A]]`, `[[B]]`, `[[C]]` (C is a tie);
- a line that starts with the verdict: the verdict alone (`B`, `**Tie**`), or after a label (`Winner: B`,
  `**Final verdict:** A`, `The better answer is B`), or followed by `is better` / `wins`
  (`Answer B is better: ...`). Only a labelled or such a stated verdict may be followed by an explanation;
  a bare `A: clear but short` describes answer A and is no verdict. The letters are capitals, so the
  article "a" is never one.

Every verdict found is collected: none is a parse failure (`no_verdict`), two different ones are a parse
failure (`ambiguous`); both are re-asked. An echoed template (`"winner": "A" | "B" | "tie"`) gives none."""

from __future__ import annotations

import json
import re
from typing import Literal

from westwind.judges.base import ParseFailure
from westwind.judges.parsers import FENCE

Verdict = Literal["A", "B", "tie"]

TAG = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
# A `"winner": "X"` field whose value ends the field: not `"A" | "B" | "tie"` (an echoed template).
WINNER_FIELD = re.compile(r"""["']winner["']\s*:\s*["']\s*(A|B|tie)\s*["']\s*(?=[,}\]]|$)""", re.I | re.M)
_LABEL = (
    r"""(?i:(?:the\s+)?(?:final\s+)?(?:verdict|winner|decision|better\s+answer|preferred\s+answer)["']?"""
    r"""[ \t*_]*(?::|=|\s+is\b))"""
)
_TOKEN = r"""(?:(?i:answer|response|assistant)[ \t]+)?["'*_\[(]*(A|B|[Tt]ie|TIE)["'*_\])]*"""
_STATED = r"(?i:[ \t]+(?:is[ \t]+(?:the[ \t]+)?better(?:[ \t]+(?:one|answer))?|wins))"
_START = r"""^[ \t>*_#-]*["']?"""
_END = r"[ \t]*[.!]?[ \t*_]*$"
_EXPLAINED = r"""[ \t]*(?:[.!:;,]|[-–—]|\()(?:[ \t].*)?$"""  # ", because ...", " - it is ...", " (shorter)"
LABELLED_LINE = re.compile(
    _START + _LABEL + r"[ \t*_]*" + _TOKEN + f"(?:{_STATED})?(?:{_END}|{_EXPLAINED})", re.M
)
STATED_LINE = re.compile(_START + _TOKEN + _STATED + f"(?:{_END}|{_EXPLAINED})", re.M)
BARE_LINE = re.compile(_START + _TOKEN + _END, re.M)


def parse_verdict(reply: str) -> Verdict:
    found = set(_json_winners(reply))
    found |= {_verdict(m) for m in WINNER_FIELD.findall(reply)}
    found |= {_verdict(m) for m in TAG.findall(reply)}
    for pattern in (LABELLED_LINE, STATED_LINE, BARE_LINE):
        found |= {_verdict(m) for m in pattern.findall(reply)}
    if not found:
        raise ParseFailure("no_verdict", "found no A/B/tie verdict where the format puts one")
    if len(found) > 1:
        raise ParseFailure("ambiguous", f"the reply gives several verdicts: {sorted(found)}")
    return found.pop()


def _json_winners(reply: str) -> list[Verdict]:
    winners = []
    decoder = json.JSONDecoder()
    for text in [*FENCE.findall(reply), reply]:
        for start in (m.start() for m in re.finditer(r"\{", text)):
            try:
                value, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and str(value.get("winner", "")).strip().upper() in ("A", "B", "TIE"):
                winners.append(_verdict(str(value["winner"])))
    return winners


def _verdict(text: str) -> Verdict:
    text = text.strip().upper()
    return "A" if text == "A" else "B" if text == "B" else "tie"
