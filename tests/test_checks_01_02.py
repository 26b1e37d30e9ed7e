"""Lessons 01 and 02: each check passes the solution and catches each classic mistake,
with the message the learner should read."""

import re

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks

L01 = solution("01_averaging")
L02 = solution("02_weighted_average")


def test_right_answers_pass(capsys):
    checks.check_average(L01["average"])
    checks.check_uniform_weights(L01["uniform_weights"])
    checks.check_normalize_rows(L02["normalize_rows"])
    checks.check_causal_average_weights(L02["causal_average_weights"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("✔") for line in lines)


def test_other_right_answers_pass():
    """Right answers written differently from the solutions pass too."""
    checks.check_average(lambda X: X.mean(dim=0))
    checks.check_uniform_weights(lambda n: torch.full((n, n), 1 / n, dtype=torch.float64))
    checks.check_normalize_rows(lambda S: F.normalize(S, p=1, dim=1))
    checks.check_causal_average_weights(lambda n: torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None])


AVERAGE_MISTAKES = {
    "wrong axis": (lambda X: X.mean(dim=1), "averaged over the features (dim=1)"),
    "keepdim": (lambda X: X.mean(dim=0, keepdim=True), "drop the extra dimension"),
    "sum, no division": (lambda X: X.sum(dim=0), "this is the sum over positions: divide it by n"),
    "divided by d": (lambda X: X.sum(dim=0) / X.shape[1], "you divided by d"),
    "a list": (lambda X: [float(v) for v in X.mean(dim=0)], "returned a list"),
    "a numpy array": (lambda X: X.numpy().mean(axis=0), "returned a numpy array"),
    "forgot return": (lambda X: None, "did you forget `return`"),
    "integer result": (lambda X: X.mean(dim=0).long(), "dtype torch.int64"),
    "NaN": (lambda X: X.mean(dim=0) * float("nan"), "holds NaN"),
    "in place": (lambda X: X.div_(X.shape[0]).sum(dim=0), "changed its input `X` in place"),
}


@pytest.mark.parametrize("mistake", AVERAGE_MISTAKES)
def test_check_average_catches(mistake):
    wrong, message = AVERAGE_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_average(wrong)


UNIFORM_MISTAKES = {
    "not normalised": (lambda n: torch.ones(n, n), "sums to 2 for n = 2, not 1: every entry should be 1/n."),
    "1/n²": (lambda n: torch.ones(n, n) / n**2, "every entry should be 1/n, not 1/n²"),
    "one row only": (lambda n: torch.ones(n) / n, "one row of weights for each position"),
    "integer division": (lambda n: torch.ones(n, n, dtype=torch.long) // n, "dtype torch.int64"),
    "identity": (lambda n: torch.eye(n), "at (0, 0) it is 1 but should be 0.5"),
}


@pytest.mark.parametrize("mistake", UNIFORM_MISTAKES)
def test_check_uniform_weights_catches(mistake):
    wrong, message = UNIFORM_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_uniform_weights(wrong)


NORMALIZE_MISTAKES = {
    "columns": (lambda S: S / S.sum(dim=0, keepdim=True), "your columns sum to 1, not your rows"),
    "no keepdim": (lambda S: S / S.sum(dim=-1), "raised RuntimeError: The size of tensor a (5) must match"),
    "no keepdim, hint": (lambda S: S / S.sum(dim=-1), "Hint: S.sum(dim=-1) has shape (n,)"),
    "softmax": (lambda S: torch.softmax(S, dim=-1), "you applied a softmax"),
    "whole matrix": (lambda S: S / S.sum(), "sum of the whole matrix"),
    "max instead of sum": (lambda S: S / S.amax(dim=-1, keepdim=True), "row 0 of your weights sums to"),
    "in place": (lambda S: S.div_(S.sum(dim=-1, keepdim=True)), "changed its input `S` in place"),
}


@pytest.mark.parametrize("mistake", NORMALIZE_MISTAKES)
def test_check_normalize_rows_catches(mistake):
    wrong, message = NORMALIZE_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_normalize_rows(wrong)


def test_check_normalize_rows_names_the_missing_keepdim_on_square_inputs():
    """On a square S the missing keepdim raises nothing: the check still says what happened."""
    with pytest.raises(AssertionError, match="keepdim=True"):
        checks.check_normalize_rows(
            lambda S: S / S.sum(dim=-1) if S.shape[0] == S.shape[1] else S / S.sum(-1, keepdim=True)
        )


CAUSAL_MISTAKES = {
    "not normalised": (
        lambda n: torch.tril(torch.ones(n, n)),
        "row 1 of your weights sums to 2 (n = 2), not 1: divide row i by i + 1",
    ),
    "divided by n": (lambda n: torch.tril(torch.ones(n, n)) / n, "you divided every row by n"),
    "the future": (lambda n: torch.triu(torch.ones(n, n)) / torch.arange(n, 0, -1)[:, None], "which comes after it"),
    "transposed": (
        lambda n: (torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]).T,
        "which comes after it",
    ),
    "diagonal left out": (
        lambda n: F.normalize(torch.tril(torch.ones(n, n), diagonal=-1), p=1, dim=-1),
        "W[0, 0] is 0",
    ),
    "uniform": (lambda n: torch.full((n, n), 1 / n), "which comes after it"),
}


@pytest.mark.parametrize("mistake", CAUSAL_MISTAKES)
def test_check_causal_average_weights_catches(mistake):
    wrong, message = CAUSAL_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_causal_average_weights(wrong)


def test_a_wrong_normalize_rows_is_named_before_causal_average_weights():
    """A right `causal_average_weights` that calls a wrong `normalize_rows` is told to fix that one first."""
    namespace = solution("02_weighted_average")
    namespace["normalize_rows"] = lambda S: S / S.sum()  # divides by the whole matrix's sum
    with pytest.raises(AssertionError) as error:
        checks.check_causal_average_weights(namespace["causal_average_weights"])
    assert "your `normalize_rows` is wrong: fix it first (exercise 1)" in str(error.value)
    assert "sum of that row" in str(error.value)  # and says what is wrong with it
