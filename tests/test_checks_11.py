"""Lesson 11: both checks pass the solutions and other right answers, and catch each classic
mistake with the message the learner should read, one wrong implementation per mistake."""

import re

import pytest
import torch

from tests.notebook_code import solution
from utils import checks

L11 = solution("11_what_heads_learn")


def test_the_solutions_pass(capsys):
    checks.check_previous_token_scores(L11["previous_token_scores"])
    checks.check_induction_scores(L11["induction_scores"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("✔ previous_token_scores passes") and lines[1].startswith("✔ induction_scores passes")


def test_checks_leave_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    checks.check_previous_token_scores(L11["previous_token_scores"])
    checks.check_induction_scores(L11["induction_scores"])
    assert torch.equal(torch.random.get_rng_state(), before)


# ---------------------------------------------------------------- right answers written differently


def previous_by_indexing(weights):
    T = weights.shape[-1]
    i = torch.arange(1, T)
    return weights[..., i, i - 1].mean(dim=-1)  # (..., h, T - 1) -> (..., h)


def previous_by_mask(weights):
    T = weights.shape[-1]
    below = torch.ones(T, T).tril(-1) - torch.ones(T, T).tril(-2)  # (T, T): 1 at (i, i - 1)
    return (weights * below).sum(dim=(-2, -1)) / (T - 1)


def previous_by_loop(weights):
    T = weights.shape[-1]
    total = torch.zeros(weights.shape[:-2])
    for i in range(1, T):
        total = total + weights[..., i, i - 1]
    return total / (T - 1)


def induction_by_indexing(weights, period):
    T = weights.shape[-1]
    i = torch.arange(period, T)
    return weights[..., i, i - period + 1].mean(dim=-1)


def induction_by_mask(weights, period):
    T = weights.shape[-1]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    target = ((j == i - period + 1) & (i >= period)).float()  # (T, T)
    return torch.einsum("...ij,ij->...", weights, target) / (T - period)


def induction_by_loop(weights, period):
    T = weights.shape[-1]
    scores = [weights[..., i, i - period + 1] for i in range(period, T)]
    return torch.stack(scores, dim=-1).mean(dim=-1)


@pytest.mark.parametrize("right", [previous_by_indexing, previous_by_mask, previous_by_loop])
def test_other_right_previous_token_scores_pass(right):
    checks.check_previous_token_scores(right)


@pytest.mark.parametrize("right", [induction_by_indexing, induction_by_mask, induction_by_loop])
def test_other_right_induction_scores_pass(right):
    checks.check_induction_scores(right)


# ---------------------------------------------------------------- previous_token_scores: each mistake


def _diag(weights, offset):
    return weights.diagonal(offset=offset, dim1=-2, dim2=-1)


def over_batch(scores):
    """The mean over every batch dimension too: `(..., h)` -> `(h,)`."""
    return scores.flatten(0, -2).mean(dim=0) if scores.dim() > 1 else scores


PREVIOUS_MISTAKES = {
    "next token": (lambda w: _diag(w, 1).mean(dim=-1), "the next token, which a causal map never sees"),
    "itself": (lambda w: _diag(w, 0).mean(dim=-1), "the main diagonal"),
    "divided by T": (lambda w: _diag(w, -1).sum(dim=-1) / w.shape[-1], "counting position 0"),
    "index wraps": (
        lambda w: w[..., torch.arange(w.shape[-1]), torch.arange(w.shape[-1]) - 1].mean(dim=-1),
        "counting position 0",
    ),
    "row 0 clamped": (
        lambda w: w[..., torch.arange(w.shape[-1]), (torch.arange(w.shape[-1]) - 1).clamp(min=0)].mean(dim=-1),
        "Position 0 has no previous token",
    ),
    "summed": (lambda w: _diag(w, -1).sum(dim=-1), "you summed"),
    "per position": (lambda w: _diag(w, -1), "one score per position"),
    "mean over heads": (lambda w: _diag(w, -1).mean(dim=-3), "you averaged over the heads"),
    "mean over batch": (lambda w: over_batch(_diag(w, -1).mean(dim=-1)), "averaged over the batch"),
    "mean of everything": (lambda w: _diag(w, -1).mean(), "a single number"),
    "diagonal of the first two dims": (lambda w: torch.diagonal(w, -1).mean(dim=-1), "dim1=-2, dim2=-1"),
    "numpy": (lambda w: _diag(w, -1).mean(dim=-1).numpy(), "numpy array"),
    "no return": (lambda w: None, "returned None"),
}


@pytest.mark.parametrize("mistake", PREVIOUS_MISTAKES, ids=str)
def test_previous_token_mistakes_are_caught(mistake):
    wrong, message = PREVIOUS_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_previous_token_scores(wrong)


def test_previous_token_in_place_change_is_caught():
    def in_place(weights):
        weights[..., 0, 0] = 0.0
        return _diag(weights, -1).mean(dim=-1)

    with pytest.raises(AssertionError, match="changed its input `weights` in place"):
        checks.check_previous_token_scores(in_place)


def test_previous_token_a_wrong_planted_score_is_caught():
    """Right on causal random maps, wrong on a head that only looks back: the planted map catches it."""

    def squashed(weights):
        right = _diag(weights, -1).mean(dim=-1)
        return torch.where(right > 0.9, torch.full_like(right, 0.5), right)

    with pytest.raises(AssertionError, match="should score 1"):
        checks.check_previous_token_scores(squashed)


# ---------------------------------------------------------------- induction_scores: each mistake


def _after(w, p):
    return _diag(w, -(p - 1))  # (..., h, T - p + 1): w[i, i - p + 1] for i >= p - 1


INDUCTION_MISTAKES = {
    "same token (i - period)": (lambda w, p: _diag(w, -p).mean(dim=-1), "the same token last time"),
    "includes i = period - 1": (lambda w, p: _after(w, p).mean(dim=-1), "still in the first pass"),
    "divided by T": (lambda w, p: _after(w, p)[..., 1:].sum(dim=-1) / w.shape[-1], "you divided by T"),
    "summed": (lambda w, p: _after(w, p)[..., 1:].sum(dim=-1), "you summed"),
    "one too close (i - period + 2)": (
        lambda w, p: _diag(w, -(p - 2))[..., 1:].mean(dim=-1),
        "one position past the token that came after",
    ),
    "same token, from i = period + 1": (
        lambda w, p: _diag(w, -p)[..., 1:].mean(dim=-1),
        "the same token last time",
    ),
    "row before the repeat clamped to 0": (
        lambda w, p: w[..., torch.arange(w.shape[-1]), (torch.arange(w.shape[-1]) - p + 1).clamp(0)].mean(-1),
        "sending their weight to position 0",
    ),
    "future": (lambda w, p: _diag(w, p - 1)[..., : w.shape[-1] - p].mean(dim=-1), "in the future"),
    "fixed period": (lambda w, p: _after(w, 3)[..., 1:].mean(dim=-1), "use the `period` you are given"),
    "previous-token score": (lambda w, p: _diag(w, 0)[..., 1:].mean(dim=-1), "use the `period` you are given"),
    "per position": (lambda w, p: _after(w, p)[..., 1:], "one score per position"),
    "mean over heads": (lambda w, p: _after(w, p)[..., 1:].mean(dim=-3), "you averaged over the heads"),
    "mean over batch": (
        lambda w, p: over_batch(_after(w, p)[..., 1:].mean(dim=-1)),
        "averaged over the batch",
    ),
    "diagonal of the first two dims": (
        lambda w, p: torch.diagonal(w, -(p - 1))[..., 1:].mean(dim=-1),
        "dim1=-2, dim2=-1",
    ),
    "integer division": (lambda w, p: (_after(w, p)[..., 1:] > 0.5).sum(dim=-1) // (w.shape[-1] - p), "dtype"),
}


@pytest.mark.parametrize("mistake", INDUCTION_MISTAKES, ids=str)
def test_induction_mistakes_are_caught(mistake):
    wrong, message = INDUCTION_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_induction_scores(wrong)


def test_induction_a_wrong_planted_score_is_caught():
    def squashed(weights, period):
        right = _after(weights, period)[..., 1:].mean(dim=-1)
        return torch.where(right > 0.9, torch.full_like(right, 0.5), right)

    with pytest.raises(AssertionError, match="should score 1"):
        checks.check_induction_scores(squashed)


def test_stubs_say_not_written():
    def stub(*args):
        raise NotImplementedError("your code here")

    for check in (checks.check_previous_token_scores, checks.check_induction_scores):
        with pytest.raises(AssertionError, match="not written yet"):
            check(stub)
