"""Toy tasks made in code, and a small seeded training loop (lessons 06 and 07).

A task makes batches of short sequences of tokens. Each token is a vector the model
reads, a label a person can read (`"A3"`: the letter A carrying the digit 3), and,
where the task asks something of it, a target: the digit it must answer. Positions
that are asked nothing have target `IGNORE`. The attention models themselves are
written in the lessons; this module only feeds and trains them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = -100  # the target of a position that is asked nothing (cross-entropy skips it)


@dataclass
class Batch:
    """A batch of sequences: what the model reads, what it must answer, and labels for plots."""

    X: torch.Tensor  # (B, n, d) float: one vector per token
    targets: torch.Tensor  # (B, n) or (B, n, a) long: the digits to answer, IGNORE where nothing is asked
    labels: list[list[str]]  # (B, n): each token as a person reads it, e.g. "A3"


def _one_hot(index: torch.Tensor, size: int) -> torch.Tensor:
    return F.one_hot(index, size).float()


class PartnerTask:
    """Lesson 06: every token must fetch the digit carried by its partner.

    The letters come in pairs, upper and lower case: `A` and `a` are partners, `B` and
    `b`, and so on. A sequence holds every letter once, in random order, each carrying a
    random digit. The answer for `A3` is the digit on `a`. A token's vector is
    one-hot(letter) ⊕ one-hot(digit), so partners share nothing: `A` is no more similar
    to `a` than to `C`. Relevance here is not similarity.
    """

    def __init__(self, pairs: int = 3, digits: int = 4):
        if not 1 <= pairs <= 26:
            raise ValueError(f"pairs must be between 1 and 26, got {pairs}")
        self.pairs = pairs
        self.digits = digits
        self.letters = [chr(ord("A") + k) for k in range(pairs)] + [chr(ord("a") + k) for k in range(pairs)]
        self.n = 2 * pairs  # tokens per sequence
        self.d_in = 2 * pairs + digits  # one-hot letter ⊕ one-hot digit
        self.classes = digits  # the answer is a digit

    def partner(self, letter: torch.Tensor) -> torch.Tensor:
        """The partner of each letter index: `A` (0) <-> `a` (pairs), and so on."""
        return (letter + self.pairs) % self.n

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """`batch_size` random sequences of `2 * pairs` tokens."""
        letters = torch.argsort(torch.rand(batch_size, self.n, generator=generator), dim=-1)  # (B, n)
        digits = torch.randint(0, self.digits, (batch_size, self.n), generator=generator)  # (B, n)
        X = torch.cat([_one_hot(letters, self.n), _one_hot(digits, self.digits)], dim=-1)  # (B, n, d_in)
        where = torch.argsort(letters, dim=-1)  # (B, n): where[b, letter] = position of that letter
        partner_position = torch.gather(where, 1, self.partner(letters))  # (B, n)
        targets = torch.gather(digits, 1, partner_position)  # (B, n)
        labels = [
            [f"{self.letters[int(k)]}{int(v)}" for k, v in zip(row_l, row_d)] for row_l, row_d in zip(letters, digits)
        ]
        return Batch(X, targets, labels)


class TwoRelationsTask(PartnerTask):
    """Lesson 07: every token must fetch two digits at once, by two different relations.

    The sequences are lesson 06's (every letter once, each carrying a digit). Each token
    now answers two questions: the digit on its partner (`A` <-> `a`, as in lesson 06)
    and the digit on the next letter of its own case (`A` -> `B` -> `C` -> `A`,
    `a` -> `b` -> `c` -> `a`). Targets have shape `(B, n, 2)`.
    """

    questions = ("partner", "next letter")

    def next_letter(self, letter: torch.Tensor) -> torch.Tensor:
        """The next letter of the same case, cyclically: `A` -> `B`, ..., the last -> `A`."""
        case, k = letter // self.pairs, letter % self.pairs
        return case * self.pairs + (k + 1) % self.pairs

    def positions(self, batch: Batch) -> torch.Tensor:
        """`(B, n, 2)`: where each token's partner, and its next letter, sit in its sequence."""
        letters = batch.X[..., : self.n].argmax(dim=-1)  # (B, n)
        where = torch.argsort(letters, dim=-1)  # (B, n): where[b, letter] = position of that letter
        related = [torch.gather(where, 1, relation(letters)) for relation in (self.partner, self.next_letter)]
        return torch.stack(related, dim=-1)  # (B, n, 2)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """`batch_size` random sequences; the answers of each token are (partner's digit, next letter's digit)."""
        batch = super().sample(batch_size, generator)
        digits = batch.X[..., self.n :].argmax(dim=-1)  # (B, n)
        positions = self.positions(batch)  # (B, n, 2)
        answers = torch.gather(digits[..., None].expand(-1, -1, 2), 1, positions)  # (B, n, 2)
        return Batch(batch.X, answers, batch.labels)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread: models this small train several times faster without
    the cost of sharing each tiny operation between threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def loss_and_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy over the asked positions, and the fraction of asked tokens answered fully right.

    `logits` is `targets.shape + (classes,)`. A token with several answers (lesson 07's
    verb) counts as right only when every one of its answers is.
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)
    asked = targets != IGNORE  # (B, n) or (B, n, a)
    right = (logits.argmax(dim=-1) == targets) | ~asked
    if targets.dim() == 3:  # several answers per token: all must be right
        right, asked = right.all(dim=-1), asked.any(dim=-1)
    accuracy = float(right[asked].float().mean()) if asked.any() else float("nan")
    return loss, accuracy


def train(
    model: nn.Module,
    task,
    *,
    steps: int,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
    every: int = 0,
    record: Callable[[int], None] | None = None,
) -> list[float]:
    """Train `model` (a `Batch.X` -> logits module) on fresh batches of `task` with Adam.

    Data come from a generator seeded with `seed`, so a run is the same every time
    (seed the model's own initialisation with `torch.manual_seed` before building it).
    `record(step)` is called before the first step and every `every` steps, for
    snapshots of what the model attends to. Returns the loss of every step.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    with one_thread():
        for step in range(steps):
            if record is not None and every and step % every == 0:
                record(step)
            model.train()
            batch = task.sample(batch_size, generator)
            loss, _ = loss_and_accuracy(model(batch.X), batch.targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        if record is not None and every:
            record(steps)
    model.eval()
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, task, *, size: int = 2000, seed: int = 1234) -> float:
    """Accuracy of `model` on `size` fresh sequences (a fixed test set: the same `seed` every time)."""
    batch = task.sample(size, torch.Generator().manual_seed(seed))
    model.eval()
    with one_thread():
        return loss_and_accuracy(model(batch.X), batch.targets)[1]
