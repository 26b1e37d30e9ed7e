"""The toy sequence tasks of lessons 08 to 10 and the training loop they share."""

import random

import pytest
import torch
import torch.nn as nn

from utils import sequences


def test_copy_back_targets_are_the_tokens_k_places_back():
    tokens, targets = sequences.copy_back_batch(16, 8, 10, 3, torch.Generator().manual_seed(0))
    assert tokens.shape == targets.shape == (16, 8) and tokens.dtype == torch.long
    assert torch.equal(targets[:, 3:], tokens[:, :-3])
    assert (targets[:, :3] == sequences.IGNORE).all()
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 10


def test_copy_back_is_reproducible_and_checks_back():
    first = sequences.copy_back_batch(4, 6, 5, 2, torch.Generator().manual_seed(7))
    second = sequences.copy_back_batch(4, 6, 5, 2, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    for back in (0, 6):
        with pytest.raises(ValueError, match="back must be between 1 and n - 1"):
            sequences.copy_back_batch(4, 6, 5, back, torch.Generator())


def test_translation_places_each_adjective_as_french_does():
    english = "the red cat eats the small fish".split()
    assert sequences.translate(english) == "le chat rouge mange le petit poisson".split()
    english = "the old wolf sees the black horse".split()
    assert sequences.translate(english) == "le vieux loup voit le cheval noir".split()
    assert set(sequences.BEFORE_NOUN) | set(sequences.AFTER_NOUN) == set(sequences.ADJECTIVES)
    assert sequences.translate(["red", "eats"]) == ["rouge", "mange"]  # no noun after it: the adjective stays


def test_random_sentences_follow_the_template():
    sentence = sequences.random_sentence(random.Random(3))
    assert len(sentence) == 7 and sentence[0] == sentence[4] == "the"
    assert sentence[1] in sequences.ADJECTIVES and sentence[2] in sequences.NOUNS and sentence[3] in sequences.VERBS


def test_translation_batches_decode_to_sentences_and_their_translations():
    state = torch.random.get_rng_state()
    source, target = sequences.translation_batch(32, torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    assert source.shape == target.shape == (32, 7)
    for row in range(32):
        english = sequences.decode(source[row], sequences.SOURCE_VOCAB)
        assert sequences.decode(target[row], sequences.TARGET_VOCAB) == sequences.translate(english)
    again, _ = sequences.translation_batch(32, torch.Generator().manual_seed(1))
    assert torch.equal(again, source)
    assert len({tuple(row.tolist()) for row in source}) > 20  # varied sentences


def test_encode_and_decode_are_inverse():
    words = ["le", "chien", "noir"]
    ids = sequences.encode(words, sequences.TARGET_VOCAB)
    assert sequences.decode(ids, sequences.TARGET_VOCAB) == words


def test_shift_right_starts_with_bos():
    target = torch.tensor([[5, 6, 7], [8, 9, 10]])
    shifted = sequences.shift_right(target)
    bos = sequences.TARGET_VOCAB.index(sequences.BOS)
    assert torch.equal(shifted, torch.tensor([[bos, 5, 6], [bos, 8, 9]]))


def test_accuracy_skips_ignored_targets():
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])  # predicts 1, 0, 0
    targets = torch.tensor([[1, sequences.IGNORE, 1]])
    assert sequences.accuracy(logits, targets) == 0.5


class Lookup(nn.Module):
    """Learns to output each token itself; returns (logits, something) like the lessons' models."""

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(5, 5)

    def forward(self, tokens):
        return self.table(tokens), None


def _batches(generator):
    tokens = torch.randint(5, (32, 4), generator=generator)
    return (tokens,), tokens


def test_training_is_seeded_learns_and_restores_the_threads():
    threads = torch.get_num_threads()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Lookup()
        runs.append(sequences.train(model, _batches, steps=60, lr=0.1, seed=3))
    assert runs[0] == runs[1]  # the same model trains the same way
    assert runs[0][-1] < 0.2 * runs[0][0]
    assert not model.training  # left in eval mode
    assert torch.get_num_threads() == threads
    tokens = torch.arange(5)[None]
    assert sequences.accuracy(model(tokens)[0], tokens) == 1.0
