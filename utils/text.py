"""A small book of verse, typed in: the text the course's tiny language models learn to write.

Every poem in `poems.txt` is in the public domain: nursery rhymes, and poems by Shakespeare, Blake,
Burns, Wordsworth, Byron, Shelley, Tennyson, Lear, Carroll, Rossetti, Dickinson, Stevenson,
Housman, Kipling and Yeats (all published before 1911, by poets who died before 1940).
About 25 KB: small enough for a CPU to learn its letters in seconds.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

BOOK = Path(__file__).with_name("poems.txt")  # each poem under a line "=== Title"


@cache
def poems() -> dict[str, str]:
    """Title -> poem, in the book's order."""
    chunks = BOOK.read_text(encoding="utf-8").split("=== ")[1:]
    return {title: poem for title, _, poem in (chunk.partition("\n") for chunk in chunks)}


def corpus() -> str:
    """Every poem, one after the other, each under its title (the tiny GPT's training text)."""
    return "\n".join(f"{title}\n\n{poem}" for title, poem in poems().items())


class Characters:
    """A text's vocabulary, its characters in sorted order, with ids for them (lessons 12, 13, 14)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {char: i for i, char in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, string: str) -> torch.Tensor:
        """A string -> its ids, (len(string),)."""
        return torch.tensor([self.index[char] for char in string])

    def decode(self, ids) -> str:
        """Ids (a tensor or a list) -> the string they spell."""
        return "".join(self.chars[int(i)] for i in ids)
