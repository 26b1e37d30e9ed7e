"""Small data made in code: the course's example sentences and their word vectors.

Used from lesson 01 on. The vectors are hand-made so that a person can read them:
each of the `FEATURES` is a column with a meaning ("person", "action", ...), plus a
little word-specific noise so that no two words are identical.
"""

from __future__ import annotations

import re
import zlib

import torch

SENTENCES = {
    "alice": "Alice wrote a note and gave it to Bob",
    "animal": "The animal didn't cross the street because it was too tired",
    "mouse": "The mouse ate some cheese",
    "thinking": "Thinking Machines",
}

FEATURES = ("person", "animal", "thing", "food", "place", "action", "quality", "grammar")

# Each word: the features it has, by name. Everything else is 0.
_LEXICON = {
    "alice": {"person": 1.0},
    "bob": {"person": 1.0},
    "animal": {"animal": 1.0},
    "mouse": {"animal": 1.0, "food": 0.2},
    "note": {"thing": 1.0},
    "street": {"place": 1.0, "thing": 0.3},
    "cheese": {"food": 1.0, "thing": 0.4},
    "machines": {"thing": 1.0, "action": 0.2},
    "thinking": {"action": 0.8, "quality": 0.3},
    "wrote": {"action": 1.0},
    "gave": {"action": 1.0},
    "ate": {"action": 1.0, "food": 0.3},
    "cross": {"action": 1.0, "place": 0.2},
    "was": {"action": 0.4, "grammar": 0.6},
    "tired": {"quality": 1.0},
    "too": {"quality": 0.4, "grammar": 0.6},
    "it": {"grammar": 0.6, "thing": 0.3, "animal": 0.3},
    "a": {"grammar": 1.0},
    "the": {"grammar": 1.0},
    "and": {"grammar": 1.0},
    "to": {"grammar": 1.0},
    "some": {"grammar": 0.8, "quality": 0.2},
    "because": {"grammar": 1.0},
    "didn't": {"grammar": 0.7, "action": 0.3},
}

NOISE = 0.1


def tokenize(sentence: str) -> list[str]:
    """Split a sentence into lower-case word tokens ("didn't" stays one token)."""
    return re.findall(r"[a-z']+", sentence.lower())


def word_vector(word: str) -> torch.Tensor:
    """The `(len(FEATURES),)` vector of one word; unknown words get a fixed random vector."""
    generator = torch.Generator().manual_seed(zlib.crc32(word.encode()))
    noise = NOISE * torch.randn(len(FEATURES), generator=generator)
    if word not in _LEXICON:
        return 0.5 * torch.randn(len(FEATURES), generator=generator) + noise
    base = torch.tensor([_LEXICON[word].get(name, 0.0) for name in FEATURES])
    return base + noise


def embed(sentence: str | list[str]) -> tuple[list[str], torch.Tensor]:
    """Tokens and their word vectors `(n, d)` for a sentence (a string or its tokens)."""
    tokens = tokenize(sentence) if isinstance(sentence, str) else list(sentence)
    if not tokens:
        raise ValueError("the sentence has no words")
    return tokens, torch.stack([word_vector(token) for token in tokens])
