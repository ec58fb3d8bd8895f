"""Display names that could pass for someone else's: mixed scripts and Microsoft product names.

The display name is what a tenant admin reads in the consent email and in Entra's consent prompt, and
the email comes from the tenant's own mailbox. A name like "Місrosoft Exchange Online" (Cyrillic М, і,
с) or "Micr0soft" would make a request look like Microsoft's own. Detection uses the Unicode
confusables and script data of ``confusable_homoglyphs`` (Unicode TR39 ``confusables.txt`` and
``Scripts.txt``), not a hand-made list of look-alike letters:

- a name mixing scripts is refused, except the combinations TR39's "Highly Restrictive" level admits
  (Latin with Han and Japanese kana, with Han and Bopomofo, or with Han and Hangul);
- each character is folded to the ASCII letter it can be confused with (the name's "skeleton"), and
  a skeleton that contains a protected product name as a word is refused.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Names an app must not pass itself off as (compared on the skeleton, as whole words; spaces inside
# a name are optional: "Office365" is "Office 365").
PROTECTED_NAMES = (
    "Microsoft",
    "Exchange",
    "Outlook",
    "Office 365",
    "Microsoft 365",
    "Entra",
    "Azure",
)
# Script sets a name may mix (TR39 section 5.2, Highly Restrictive), besides Common and Inherited.
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NEUTRAL = frozenset({"COMMON", "INHERITED"})


@lru_cache(maxsize=1)
def _protected() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple(
        (name, re.compile(r"\b" + r"\s*".join(re.escape(w.casefold()) for w in name.split()) + r"\b"))
        for name in PROTECTED_NAMES
    )


def scripts(text: str) -> set[str]:
    """The scripts of ``text``'s characters, without Common and Inherited (spaces, digits, marks)."""
    from confusable_homoglyphs import categories

    return {categories.alias(char) for char in text} - _NEUTRAL


def skeleton(text: str) -> str:
    """``text`` with every character folded to the ASCII letter or digit it can be confused with,
    case-folded, and runs of anything else turned into one space."""
    from confusable_homoglyphs import confusables

    text = unicodedata.normalize("NFKC", text)
    found = confusables.is_confusable(text, greedy=True, preferred_aliases=["latin"]) or []
    folding: dict[str, str] = {}
    for item in found:
        ascii_forms = [h["c"] for h in item["homoglyphs"] if h["c"].isascii() and h["c"].isalnum()]
        if ascii_forms:
            folding[item["character"]] = ascii_forms[0]
    folded = "".join(folding.get(char, char) for char in text).casefold()
    return re.sub(r"[\W_]+", " ", folded).strip()


def display_name_problem(text: str) -> str | None:
    """Why ``text`` could pass for another app or for Microsoft, or None."""
    found = scripts(text)
    if len(found) > 1 and not any(found <= mix for mix in _ALLOWED_MIXES):
        names = ", ".join(sorted(s.title() for s in found))
        return f"must not mix scripts ({names}): letters from another script can imitate a name"
    folded = skeleton(text)
    for name, pattern in _protected():
        if pattern.search(folded):
            return f"must not look like the Microsoft product name {name!r}"
    return None
