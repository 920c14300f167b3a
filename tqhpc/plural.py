"""Counts as a person writes them in messages: "1 task", "2 tasks", never "1 tasks"."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str = "") -> str:
    """`count` and the noun in the number it needs; `plural_noun` for the nouns that do not just add an s."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"
