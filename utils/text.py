"""A small book of verse, typed in: the text the course's tiny language models learn to write.

Every poem in `poems.txt` is in the public domain: nursery rhymes, and poems by Shakespeare, Blake,
Burns, Wordsworth, Byron, Shelley, Tennyson, Lear, Carroll, Rossetti, Dickinson, Stevenson,
Housman, Kipling and Yeats (all published before 1911, by poets who died before 1940).
About 25 KB: small enough for a CPU to learn its letters in seconds.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

BOOK = Path(__file__).with_name("poems.txt")  # each poem under a line "=== Title"


@cache
def poems() -> dict[str, str]:
    """Title -> poem, in the book's order."""
    chunks = BOOK.read_text(encoding="utf-8").split("=== ")[1:]
    return {title: poem for title, _, poem in (chunk.partition("\n") for chunk in chunks)}


def corpus() -> str:
    """Every poem, one after the other, each under its title (the tiny GPT's training text)."""
    return "\n".join(f"{title}\n\n{poem}" for title, poem in poems().items())
