"""Toy sequence tasks made in code, and a small seeded training loop (lessons 08 to 10).

The tasks are tiny on purpose, so that a model learns them on a CPU in seconds:

- `copy_back_batch`: repeat the token `back` places back (lesson 09: a task that needs order);
- `translation_batch`: a toy English → French translation in which some adjectives stay before
  their noun and the others move behind it, as in French (lesson 10: cross-attention and
  additive attention).

The models themselves live in the lessons; `train` only runs the loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.tasks import one_thread

IGNORE = -100  # a target that the loss and the accuracy skip (`F.cross_entropy`'s ignore_index)


def copy_back_batch(
    batch_size: int, n: int, vocab_size: int, back: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens `(B, n)` and targets `(B, n)`: target i is token i - back (IGNORE where i < back)."""
    if not 0 < back < n:
        raise ValueError(f"back must be between 1 and n - 1 = {n - 1}; got {back}")
    tokens = torch.randint(vocab_size, (batch_size, n), generator=generator)
    targets = torch.full_like(tokens, IGNORE)
    targets[:, back:] = tokens[:, :-back]
    return tokens, targets


# The toy translation: "the ADJ NOUN VERB the ADJ NOUN" into French, word for word except for where
# each adjective goes. As in French, a few short, common adjectives go before their noun (BEFORE_NOUN:
# *le petit chat*) and the others after it (*le chat noir*), so where a French word comes from depends
# on which adjective the sentence holds. Every noun is masculine and starts with a consonant, so the
# article is always *le* and the adjectives need no agreement.
DICTIONARY = {
    "the": "le",
    "small": "petit",
    "big": "grand",
    "old": "vieux",
    "young": "jeune",
    "red": "rouge",
    "black": "noir",
    "white": "blanc",
    "green": "vert",
    "cat": "chat",
    "dog": "chien",
    "fish": "poisson",
    "fox": "renard",
    "wolf": "loup",
    "horse": "cheval",
    "eats": "mange",
    "sees": "voit",
    "chases": "chasse",
    "likes": "aime",
}
BEFORE_NOUN = ("small", "big", "old", "young")  # petit, grand, vieux, jeune: before the noun in French
AFTER_NOUN = ("red", "black", "white", "green")  # rouge, noir, blanc, vert: after it
ADJECTIVES = BEFORE_NOUN + AFTER_NOUN
NOUNS = ("cat", "dog", "fish", "fox", "wolf", "horse")
VERBS = ("eats", "sees", "chases", "likes")
SOURCE_VOCAB = tuple(DICTIONARY)
BOS = "<s>"  # the token a decoder starts from
TARGET_VOCAB = (BOS, *DICTIONARY.values())


def random_sentence(rng: random.Random) -> list[str]:
    """One English sentence of the toy language: the ADJ NOUN VERB the ADJ NOUN."""
    return [
        "the",
        rng.choice(ADJECTIVES),
        rng.choice(NOUNS),
        rng.choice(VERBS),
        "the",
        rng.choice(ADJECTIVES),
        rng.choice(NOUNS),
    ]


def translate(words: Sequence[str]) -> list[str]:
    """The toy French: every word from the dictionary; an adjective of AFTER_NOUN moves behind its noun,
    one of BEFORE_NOUN stays in front of it."""
    out = [DICTIONARY[word] for word in words]
    for i, word in enumerate(words[:-1]):
        if word in AFTER_NOUN and words[i + 1] in NOUNS:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def encode(words: Sequence[str], vocab: Sequence[str]) -> torch.Tensor:
    """Word ids `(len(words),)` in `vocab`."""
    index = {word: i for i, word in enumerate(vocab)}
    return torch.tensor([index[word] for word in words])


def decode(ids, vocab: Sequence[str]) -> list[str]:
    """The words of a row of ids."""
    return [vocab[int(i)] for i in ids]


def translation_batch(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """English sentences `(B, 7)` as SOURCE_VOCAB ids and their translations `(B, 7)` as TARGET_VOCAB ids."""
    rng = random.Random(int(torch.randint(2**31, (1,), generator=generator)))
    sentences = [random_sentence(rng) for _ in range(batch_size)]
    source = torch.stack([encode(words, SOURCE_VOCAB) for words in sentences])
    target = torch.stack([encode(translate(words), TARGET_VOCAB) for words in sentences])
    return source, target


def shift_right(target: torch.Tensor) -> torch.Tensor:
    """A decoder's inputs under teacher forcing: BOS, then the target without its last token."""
    start = torch.full_like(target[..., :1], TARGET_VOCAB.index(BOS))
    return torch.cat([start, target[..., :-1]], dim=-1)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The fraction of targets (IGNORE skipped) whose highest logit is right."""
    keep = targets != IGNORE
    return float((logits.argmax(dim=-1)[keep] == targets[keep]).float().mean())


def train(
    model: nn.Module,
    make_batch: Callable[[torch.Generator], tuple[tuple, torch.Tensor]],
    steps: int,
    *,
    lr: float = 1e-2,
    seed: int = 0,
) -> list[float]:
    """Adam on the cross-entropy of `model(*inputs)` (logits `(..., vocab)`, or a tuple that starts with them)
    against the targets; returns the losses.

    `make_batch(generator)` returns `(inputs, targets)`; the batches come from a generator
    seeded with `seed`, so the same model trains the same way every time.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    with one_thread():  # models this small train faster on one CPU thread, and far faster on a busy machine
        for _ in range(steps):
            inputs, targets = make_batch(generator)
            logits = model(*inputs)
            if isinstance(logits, tuple):  # a model that returns (logits, weights)
                logits = logits[0]
            loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return losses
