"""The toy tasks of lessons 06 and 07 ask what they say they ask, and the training loop is
seeded, leaves the thread setting alone, and learns."""

import pytest
import torch
import torch.nn as nn

from utils import tasks


def decode(label: str) -> tuple[str, int]:
    return label[0], int(label[1:])


def test_partner_task_asks_for_the_partners_digit():
    task = tasks.PartnerTask(pairs=3, digits=4)
    batch = task.sample(50, torch.Generator().manual_seed(0))
    assert batch.X.shape == (50, 6, 10) and batch.targets.shape == (50, 6)
    for labels, targets in zip(batch.labels, batch.targets):
        tokens = dict(decode(label) for label in labels)
        assert sorted(tokens) == sorted(task.letters)  # every letter once
        for label, target in zip(labels, targets):
            letter, _ = decode(label)
            assert int(target) == tokens[letter.swapcase()]


def test_partners_share_no_feature_and_vectors_match_labels():
    task = tasks.PartnerTask(pairs=2, digits=3)
    batch = task.sample(20, torch.Generator().manual_seed(1))
    for x, labels in zip(batch.X, batch.labels):
        for vector, label in zip(x, labels):
            letter, digit = decode(label)
            assert vector[task.letters.index(letter)] == 1 and vector[task.n + digit] == 1 and vector.sum() == 2
    letter_part = torch.eye(task.n)
    assert letter_part[0] @ letter_part[task.partner(torch.tensor(0))] == 0  # A is no more like a than like B


def test_two_relations_task_asks_for_partner_and_next_letter():
    task = tasks.TwoRelationsTask(pairs=3, digits=4)
    batch = task.sample(50, torch.Generator().manual_seed(2))
    assert batch.targets.shape == (50, 6, 2)
    following = {"A": "B", "B": "C", "C": "A", "a": "b", "b": "c", "c": "a"}
    positions = task.positions(batch)
    for labels, targets, where in zip(batch.labels, batch.targets, positions):
        tokens = dict(decode(label) for label in labels)
        for i, label in enumerate(labels):
            letter, _ = decode(label)
            assert targets[i].tolist() == [tokens[letter.swapcase()], tokens[following[letter]]]
            assert decode(labels[where[i, 0]])[0] == letter.swapcase()
            assert decode(labels[where[i, 1]])[0] == following[letter]


def test_samples_repeat_with_the_same_seed_and_leave_the_global_generator_alone():
    task = tasks.TwoRelationsTask()
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    first = task.sample(8, torch.Generator().manual_seed(3))
    second = task.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(first.X, second.X) and torch.equal(first.targets, second.targets)
    assert torch.equal(torch.rand(2), expected)


def test_too_many_pairs_are_refused():
    with pytest.raises(ValueError, match="pairs must be between 1 and 26"):
        tasks.PartnerTask(pairs=27)


def test_accuracy_skips_unasked_positions_and_needs_every_answer():
    targets = torch.tensor([[[1, 0], [tasks.IGNORE, tasks.IGNORE]], [[2, 2], [0, 1]]])  # (2, 2, 2)
    logits = torch.nn.functional.one_hot(targets.clamp(min=0), 3).float()  # right everywhere
    loss, accuracy = tasks.loss_and_accuracy(logits, targets)
    assert accuracy == 1.0 and loss < 1.0
    logits[1, 1, 1] = torch.tensor([0.0, 0.0, 5.0])  # one of two answers wrong: that token is wrong
    assert tasks.loss_and_accuracy(logits, targets)[1] == pytest.approx(2 / 3)


class Reader(nn.Module):
    """A tiny attention model for the partner task (the lessons write their own)."""

    def __init__(self, task):
        super().__init__()
        self.q, self.k = nn.Linear(task.d_in, 8, bias=False), nn.Linear(task.d_in, 8, bias=False)
        self.v, self.readout = nn.Linear(task.d_in, 8, bias=False), nn.Linear(8, task.classes)

    def forward(self, X):
        weights = torch.softmax(self.q(X) @ self.k(X).transpose(-2, -1) / 8**0.5, dim=-1)
        return self.readout(weights @ self.v(X))


def test_train_is_seeded_records_snapshots_and_learns():
    task = tasks.PartnerTask(pairs=2, digits=3)
    runs, recorded = [], []
    for _ in range(2):
        torch.manual_seed(0)
        model = Reader(task)
        threads = torch.get_num_threads()
        runs.append(tasks.train(model, task, steps=120, lr=0.02, seed=0, every=50, record=recorded.append))
        assert torch.get_num_threads() == threads
    assert runs[0] == runs[1] and len(runs[0]) == 120
    assert recorded == [0, 50, 100, 120] * 2
    assert sum(runs[0][-10:]) < sum(runs[0][:10]) / 4
    assert tasks.evaluate(model, task, size=300) > 0.95
    assert not model.training
