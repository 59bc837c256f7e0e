"""Reading judge replies. Ratings: the rubric's own layout (`#### Output for Text N` blocks with line-anchored
`Type:`/`Rating:`/`Rationale:` fields) strictly first; then a JSON `{"ratings": [...]}` reply whose objects
carry a `rating` (or `score`) field; then looser `Text N` blocks. A fallback is used only when it is
unambiguous: a block with two different ratings, a repeated block, a rating for a text that was not shown
(a fifth text in a 4-text reply), or a JSON `true` as a rating is a parse failure (re-asked), never a guess.

Verdicts are read only where a format puts one (`westwind.judges.verdicts`). `PARSER_VERSION` names these
rules: it is part of an LLM judge's key, so a verdict read under older rules is never reused."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from westwind.judges.base import ParseFailure

# Bump when a reply may be read differently: every LLM judgment made under the older rules is redone.
PARSER_VERSION = 2


class ParsedRating(NamedTuple):
    rating: float | None  # None: N/A
    rationale: str
    types: list[int] | None = None  # the rubric's rationale types; None when not asked or not given


class Entry(NamedTuple):
    raw: Any  # the rating as written
    rationale: str
    types: list[int] | None = None


NATIVE_HEADER = re.compile(r"^[ \t]*#{1,6}[ \t]*Output[ \t]+for[ \t]+Text[ \t]*(\d+)[ \t:]*$", re.I | re.M)
LOOSE_HEADER = re.compile(r"^[\s#*>-]*(?:output\s+for\s+)?text\s*#?\s*(\d+)\b", re.I | re.M)
FIELD = re.compile(r"^[ \t]*[-*_]*[ \t]*(type|rationale|rating)[*_]*[ \t]*:[*_]*[ \t]*(.*)$", re.I | re.M)
# A rating value, with markdown emphasis, an optional `/5` and an optional short comment in parentheses.
RATING_VALUE = re.compile(
    r"[*_\s]*(N\s*/\s*A|None|\d+(?:\.\d+)?)\s*(?:/\s*5)?[*_\s.]*(?:\([^()\n]*\)[*_\s.]*)?", re.I
)
JSON_TEXT_KEY = re.compile(r"""(?<!\\)["']text["']\s*:\s*["']?(\d+)""")
JSON_RATING = re.compile(
    r"""(?<!\\)["'](?:rating|score)["']\s*:\s*["']?\s*(N\s*/\s*A|None|null|true|false|-?\d+(?:\.\d+)?)""",
    re.I,
)
JSON_RATIONALE = re.compile(r"""(?<!\\)["']rationale["']\s*:\s*"((?:[^"\\]|\\.)*)"?""")
FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)


def parse_ratings(reply: str, count: int, allow_na: bool) -> list[ParsedRating]:
    """Ratings for texts 1..count, in the order tried: the rubric's layout, JSON, loose `Text N` blocks."""
    entries = _native_entries(reply)
    if entries is None:
        entries = _json_entries(reply)
    if entries is None:
        entries = _json_fragment_entries(reply)
    if entries is None:
        entries = _text_entries(reply, LOOSE_HEADER)
    if not entries:
        raise ParseFailure("no_ratings", "found no ratings")
    return _validated(entries, count, allow_na)


def _blocks(reply: str, header: re.Pattern) -> list[tuple[int, str]]:
    headers = list(header.finditer(reply))
    if not headers:
        return []
    ends = [h.start() for h in headers[1:]] + [len(reply)]
    return [(int(h.group(1)), reply[h.end() : end]) for h, end in zip(headers, ends, strict=True)]


def _native_entries(reply: str) -> dict[int, Entry] | None:
    return _text_entries(reply, NATIVE_HEADER) if NATIVE_HEADER.search(reply) else None


def _text_entries(reply: str, header: re.Pattern) -> dict[int, Entry] | None:
    """Blocks under `header`, each with exactly one rating (repeats of the same value are tolerated)."""
    blocks = _blocks(reply, header)
    if not blocks:
        return None
    entries: dict[int, Entry] = {}
    for number, block in blocks:
        fields = [(m.group(1).lower(), m.group(2).strip()) for m in FIELD.finditer(block)]
        ratings = {value for name, value in fields if name == "rating"}
        if not ratings:
            continue
        if len(ratings) > 1:
            raise ParseFailure("ambiguous", f"text {number} has several ratings: {sorted(ratings)}")
        if number in entries:
            raise ParseFailure("ambiguous", f"text {number} is rated twice")
        entries[number] = _entry(fields, ratings.pop())
    return entries


def _entry(fields: list[tuple[str, str]], rating: str) -> Entry:
    """The rating's rationale is the one after the rating line (UltraFeedback puts the type's first)."""
    names = [name for name, _ in fields]
    at = names.index("rating")
    after = [value for name, value in fields[at:] if name == "rationale"]
    before = [value for name, value in fields[:at] if name == "rationale"]
    rationale = after[0] if after else (before[-1] if before else "")
    type_text = next((value for name, value in fields if name == "type"), None)
    value = RATING_VALUE.fullmatch(rating)
    return Entry(value.group(1) if value else rating, rationale, _types(type_text))


def _types(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if re.fullmatch(r"[\s\[\]\"'*]*none[\s\[\]\"'*.]*", text, re.I):
        return []
    return sorted({int(n) for n in re.findall(r"\b([1-3])\b", text)})


RATING_KEYS = {"rating", "score"}


def is_ratings_list(items: Any) -> bool:
    """A non-empty list of objects of which at least one carries a rating field: a quoted list of other
    objects (`[{"name": "Ann"}, ...]`) is no ratings."""
    return (
        isinstance(items, list)
        and bool(items)
        and all(isinstance(i, dict) for i in items)
        and any(RATING_KEYS & i.keys() for i in items)
    )


def _json_entries(reply: str) -> dict[int, Entry] | None:
    """Entries from the first JSON value holding ratings (fenced or bare), or None when there is none."""
    decoder = json.JSONDecoder()
    for text in [*FENCE.findall(reply), reply]:
        for start in (m.start() for m in re.finditer(r"[{\[]", text)):
            try:
                value, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            items = value.get("ratings") if isinstance(value, dict) else value
            if not is_ratings_list(items):
                continue
            entries: dict[int, Entry] = {}
            for position, item in enumerate(items, 1):
                number = _int(item.get("text", item.get("id", position)))
                if number in entries:
                    raise ParseFailure("ambiguous", f"text {number} is rated twice")
                if not RATING_KEYS & item.keys():
                    raise ParseFailure("incomplete", f"text {number} has no rating field")
                types = item.get("type")
                entries[number] = Entry(
                    item.get("rating", item.get("score")),
                    str(item.get("rationale", "")),
                    _types(None if types is None else str(types)),
                )
            return entries
    return None


def _json_fragment_entries(reply: str) -> dict[int, Entry] | None:
    """JSON cut short (a token limit): `"text": N ... "rating": X` runs with quoted keys, so a rationale's
    words ("text 2 is worse, rating: 1") never count."""
    headers = list(JSON_TEXT_KEY.finditer(reply))
    if not headers:
        return None
    ends = [h.start() for h in headers[1:]] + [len(reply)]
    entries: dict[int, Entry] = {}
    for header, end in zip(headers, ends, strict=True):
        block = reply[header.end() : end]
        ratings = {m.group(1) for m in JSON_RATING.finditer(block)}
        if not ratings:
            continue
        number = int(header.group(1))
        if len(ratings) > 1 or number in entries:
            raise ParseFailure("ambiguous", f"text {number} has several ratings")
        rationale = JSON_RATIONALE.search(block)
        raw = ratings.pop()
        raw = {"true": True, "false": False, "null": None}.get(raw.lower(), raw)
        entries[number] = Entry(raw, rationale.group(1) if rationale else "")
    return entries


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return -1
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _validated(entries: dict[int, Entry], count: int, allow_na: bool) -> list[ParsedRating]:
    extra = sorted(n for n in entries if not 1 <= n <= count)
    if extra:  # the judge answered another question than the one asked
        raise ParseFailure("extra_texts", f"rated text(s) {extra}, but {count} were shown")
    missing = [i for i in range(1, count + 1) if i not in entries]
    if missing:
        raise ParseFailure("incomplete", f"no rating for text(s) {missing}")
    parsed = []
    for index in range(1, count + 1):
        raw, rationale, types = entries[index]
        if raw is None or (isinstance(raw, str) and re.fullmatch(r"N\s*/\s*A|None|NA", raw.strip(), re.I)):
            if not allow_na:
                raise ParseFailure(
                    "unexpected_na", f"text {index} rated N/A on an aspect that needs a number"
                )
            parsed.append(ParsedRating(None, rationale, types))
            continue
        if isinstance(raw, bool):  # JSON true is not a rating of 1
            raise ParseFailure("not_a_number", f"text {index}: {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ParseFailure("not_a_number", f"text {index}: {raw!r}") from None
        if not 1 <= value <= 5:
            raise ParseFailure("out_of_range", f"text {index} rated {raw}")
        parsed.append(ParsedRating(value, rationale, types))
    return parsed
