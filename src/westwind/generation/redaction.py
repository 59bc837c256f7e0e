"""Keeping an API key out of error texts, journals and logs. Servers echo keys whole, cut, or masked in many
ways (`gsk_ab****yz12`, `gsk_ab•••••yz12`, `gsk_ab…yz12`, `gsk_abXXXXyz12`); a word is removed when it holds
any run of `MIN_RUN` consecutive characters of the key's secret part (what follows a public prefix such as
`sk-`, `sk-proj-`, `gsk_`), or when it is a masked form of the key: a visible start of the key, a mask (a
run of one repeated character, or any of `*•·…`), and a visible end of the key. Redact the whole text
before cutting it short: a key cut in two is still found in full text, not always in a piece of it."""

from __future__ import annotations

import re

MIN_RUN = 6
PUBLIC_PREFIX = re.compile(r"^(?:[a-z]{1,5}[-_]){1,2}")  # sk-, sk-proj-, gsk_, hf_, gsk_live_
WORD = re.compile(r"[^\s\"'`(){}\[\]<>,;:=]+")
MASK = re.compile(r"(.)\1{2,}|[*•·…]+")
SK_KEY = re.compile(r"\bsk-[A-Za-z0-9*_\-.•…]{4,}")


def redact_key(text: str, key: str) -> str:
    """`text` without `key` in any of the forms above (each such word becomes `***`), and without anything
    that looks like an OpenAI `sk-` key."""
    if key and key != "EMPTY":
        text = text.replace(key, "***")
        secret = key[len(public_prefix(key)) :]
        runs = {secret[i : i + MIN_RUN] for i in range(len(secret) - MIN_RUN + 1)}

        def hide(match: re.Match) -> str:
            word = match.group(0)
            if holds_run(word, runs) or is_masked_form(word, key):
                end = word[len(word.rstrip(".!?")) :]
                return "***" + (end if len(end) == 1 else "")  # keep a full stop, not a `...` mask
            return word

        text = WORD.sub(hide, text)
    return SK_KEY.sub("sk-***", text)


def public_prefix(key: str) -> str:
    return PUBLIC_PREFIX.match(key).group(0) if PUBLIC_PREFIX.match(key) else ""


def holds_run(word: str, runs: set[str]) -> bool:
    return any(word[i : i + MIN_RUN] in runs for i in range(len(word) - MIN_RUN + 1))


def is_masked_form(word: str, key: str) -> bool:
    """`word` is the key's start, a mask and the key's end, showing at least 2 characters of the secret
    and 4 in all (`sk-tes***1234`, `gsk_ab…yz12`, `****yz12`); a trailing full stop is not part of it."""
    prefix = len(public_prefix(key))
    for form in {word, word.rstrip(".,!?")}:
        for mask in MASK.finditer(form):
            head, tail = form[: mask.start()], form[mask.end() :]
            shown = max(0, len(head) - prefix) + len(tail)
            if key.startswith(head) and key.endswith(tail) and shown >= 2 and len(head) + len(tail) >= 4:
                return True
    return False
