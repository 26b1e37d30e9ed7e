"""Lessons 08 to 10: each check passes the solutions and other right answers, and catches
each classic mistake with the message the learner should read."""

import math
import re

import pytest
import torch
import torch.nn as nn

from tests.notebook_code import solution
from utils import checks

L08 = solution("08_masking")
L09 = solution("09_positional_encoding")
L10 = solution("10_beyond_self_attention")

CHECKS = [
    (checks.check_causal_mask, L08["causal_mask"]),
    (checks.check_padding_mask, L08["padding_mask"]),
    (checks.check_sliding_window_mask, L08["sliding_window_mask"]),
    (checks.check_masked_softmax, L08["masked_softmax"]),
    (checks.check_masked_attention, L08["masked_attention"]),
    (checks.check_sinusoidal_encoding, L09["sinusoidal_encoding"]),
    (checks.check_apply_rope, L09["apply_rope"]),
    (checks.check_cross_attention, L10["CrossAttention"]),
    (checks.check_additive_scores, L10["additive_scores"]),
]


def test_right_answers_pass(capsys):
    for check, answer in CHECKS:
        check(answer)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(CHECKS) and all(line.startswith("✔") for line in lines)


def test_checks_leave_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    for check, answer in CHECKS:
        check(answer)
    assert torch.equal(torch.random.get_rng_state(), before)


# ---------------------------------------------------------------- right answers written differently


def _offsets(n):
    return torch.arange(n)[:, None] - torch.arange(n)[None, :]  # (n, n): i - j


def other_masked_softmax(scores, mask):
    return torch.where(mask, scores, float("-inf")).softmax(dim=-1).nan_to_num(0.0)


def other_masked_attention(Q, K, V, mask=None):
    scores = torch.einsum("...nd,...md->...nm", Q, K) * Q.shape[-1] ** -0.5
    weights = scores.softmax(dim=-1) if mask is None else other_masked_softmax(scores, mask)
    return torch.einsum("...nm,...mv->...nv", weights, V), weights


def other_sinusoidal_encoding(n, d):
    rows = [[0.0] * d for _ in range(n)]
    for p in range(n):
        for column in range(0, d, 2):
            angle = p / 10000 ** (column / d)
            rows[p][column], rows[p][column + 1] = math.sin(angle), math.cos(angle)
    return torch.tensor(rows, dtype=torch.float64)


def other_apply_rope(x, base=10000):
    n, d = x.shape[-2:]
    angles = torch.outer(torch.arange(n, dtype=torch.float64), base ** (-torch.arange(0, d, 2) / d))  # (n, d/2)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(pairs * torch.exp(1j * angles)).flatten(-2).to(x.dtype)


class OtherCrossAttention(nn.Module):
    def __init__(self, d_q, d_kv, d_k):
        super().__init__()
        self.W_q, self.W_k, self.W_v = (nn.Linear(d, d_k, bias=False) for d in (d_q, d_kv, d_kv))

    def forward(self, x_q, x_kv, mask=None):
        return other_masked_attention(self.W_q(x_q), self.W_k(x_kv), self.W_v(x_kv), mask)


def other_additive_scores(queries, keys, W_q, W_k, w_v):
    """The concatenated form: W [q; k] with W = [W_q W_k]."""
    n, m = queries.shape[-2], keys.shape[-2]
    batch = torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2])
    pairs = torch.cat(
        [queries[..., :, None, :].expand(*batch, n, m, -1), keys[..., None, :, :].expand(*batch, n, m, -1)], dim=-1
    )  # (..., n, m, d_q + d_kv)
    return torch.tanh(pairs @ torch.cat([W_q, W_k], dim=1).T) @ w_v


def test_other_right_answers_pass():
    checks.check_causal_mask(lambda n: torch.ones(n, n, dtype=torch.bool).tril())
    checks.check_padding_mask(lambda lengths, n: torch.stack([torch.arange(n) < int(k) for k in lengths]))
    checks.check_sliding_window_mask(lambda n, w: torch.ones(n, n).tril().bool() & ~torch.ones(n, n).tril(-w).bool())
    checks.check_masked_softmax(other_masked_softmax)
    checks.check_masked_attention(other_masked_attention)
    checks.check_sinusoidal_encoding(other_sinusoidal_encoding)
    checks.check_apply_rope(other_apply_rope)
    checks.check_cross_attention(OtherCrossAttention)
    checks.check_additive_scores(other_additive_scores)


def _catches(check, mistakes, mistake):
    wrong, message = mistakes[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        check(wrong)


# ---------------------------------------------------------------- lesson 08


def _tril(n, diagonal=0):
    return torch.ones(n, n, dtype=torch.bool).tril(diagonal)


CAUSAL_MISTAKES = {
    "opposite meaning": (lambda n: torch.ones(n, n, dtype=torch.bool).triu(1), "that is the opposite meaning"),
    "the future": (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "that is the future"),
    "diagonal excluded": (lambda n: _tril(n, -1), "your mask blocks the diagonal"),
    "everything allowed": (lambda n: torch.ones(n, n, dtype=torch.bool), "your mask allows everything"),
    "one step ahead": (lambda n: _tril(n, 1), "is True at (0, 1) (n = 5): position 0 would see position 1"),
    "0/1 floats": (lambda n: torch.ones(n, n).tril(), "return a bool tensor"),
    "additive float mask": (
        lambda n: torch.zeros(n, n).masked_fill(~_tril(n), float("-inf")),
        "an additive float mask (0 and −inf)",
    ),
    "one row": (lambda n: torch.ones(n, dtype=torch.bool), "expected shape (5, 5)"),
    "forgot return": (lambda n: None, "did you forget `return`"),
}


@pytest.mark.parametrize("mistake", CAUSAL_MISTAKES)
def test_check_causal_mask_catches(mistake):
    _catches(checks.check_causal_mask, CAUSAL_MISTAKES, mistake)


PADDING_MISTAKES = {
    "opposite meaning": (
        lambda lengths, n: torch.arange(n)[None, :] >= lengths[:, None],
        "your `padding_mask` is True at the padding and False at the real tokens",
    ),
    "off by one": (
        lambda lengths, n: torch.arange(n)[None, :] <= lengths[:, None],
        "your `padding_mask` is True at position lengths[b] too (lengths = [3, 1, 4], n = 4): row 0 has 3 real "
        "tokens, positions 0..2, yet your mask is True at position 3",
    ),
    "a wrong position": (
        lambda lengths, n: (torch.arange(n)[None, :] < lengths[:, None]) & (torch.arange(n) != 1),
        "your `padding_mask` is False at (0, 1)",
    ),
    "transposed": (lambda lengths, n: torch.arange(n)[:, None] < lengths[None, :], "one row per sentence"),
    "extra dimensions": (
        lambda lengths, n: (torch.arange(n)[None, :] < lengths[:, None])[:, None, :],
        "Return the plain (B, n) mask",
    ),
    "padding on the left": (
        lambda lengths, n: torch.arange(n)[None, :] >= (n - lengths)[:, None],
        "your `padding_mask` puts its True values at the end of each row",
    ),
    "floats": (lambda lengths, n: (torch.arange(n)[None, :] < lengths[:, None]).float(), "return a bool tensor"),
    "in place": (lambda lengths, n: torch.arange(n)[None, :] < lengths.sub_(0).add_(1)[:, None], "in place"),
}


@pytest.mark.parametrize("mistake", PADDING_MISTAKES)
def test_check_padding_mask_catches(mistake):
    _catches(checks.check_padding_mask, PADDING_MISTAKES, mistake)


WINDOW_MISTAKES = {
    "opposite meaning": (lambda n, w: ~((_offsets(n) >= 0) & (_offsets(n) < w)), "that is the opposite meaning"),
    "window + 1": (lambda n, w: (_offsets(n) >= 0) & (_offsets(n) <= w), "row i allows window + 1 = 3 positions"),
    "window - 1": (lambda n, w: (_offsets(n) >= 0) & (_offsets(n) < w - 1), "row i allows only window − 1 = 1"),
    "looks ahead too": (lambda n, w: _offsets(n).abs() < w, "your window also looks ahead"),
    "looks ahead only": (
        lambda n, w: (_offsets(n) <= 0) & (_offsets(n) > -w),
        "your window looks at the next positions",
    ),
    "diagonal excluded": (lambda n, w: (_offsets(n) > 0) & (_offsets(n) <= w), "leaves out the diagonal"),
    "window ignored": (lambda n, w: _offsets(n) >= 0, "this is the plain causal mask"),
    "integers": (lambda n, w: ((_offsets(n) >= 0) & (_offsets(n) < w)).long(), "return a bool tensor"),
}


@pytest.mark.parametrize("mistake", WINDOW_MISTAKES)
def test_check_sliding_window_mask_catches(mistake):
    _catches(checks.check_sliding_window_mask, WINDOW_MISTAKES, mistake)


def _exp_by_hand(scores, mask):
    e = torch.exp(scores) * mask
    return e / e.sum(dim=-1, keepdim=True)


def _inverted(scores, mask):
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1).masked_fill(mask, 0.0)


SOFTMAX_MISTAKES = {
    "zeros after": (lambda s, m: torch.softmax(s, dim=-1) * m, "you set the masked weights to 0 *after* the softmax"),
    "zeros before": (
        lambda s, m: torch.softmax(s.masked_fill(~m, 0.0), dim=-1),
        "a score of 0 is not 'nothing', since e⁰ = 1",
    ),
    "scores times mask": (lambda s, m: torch.softmax(s * m, dim=-1), "a score of 0 is not 'nothing'"),
    "opposite meaning": (_inverted, "that is the opposite meaning"),
    "mask ignored": (lambda s, m: torch.softmax(s, dim=-1), "the mask was not used"),
    "over the queries": (
        lambda s, m: torch.softmax(s.masked_fill(~m, float("-inf")), dim=-2).nan_to_num(0.0),
        "your weights sum to 1 down the columns",
    ),
    "NaN on a fully masked row": (
        lambda s, m: torch.softmax(s.masked_fill(~m, float("-inf")), dim=-1),
        "a fully masked row gives NaN",
    ),
    "large negative number": (
        lambda s, m: torch.softmax(s.masked_fill(~m, -1e9), dim=-1),
        "give each of its positions 0.25",
    ),
    "exp by hand": (_exp_by_hand, "e^100 overflows"),
    "in place": (
        lambda s, m: torch.softmax(s.masked_fill_(~m, float("-inf")), dim=-1).nan_to_num(0.0),
        "changed its input `scores` in place",
    ),
}


@pytest.mark.parametrize("mistake", SOFTMAX_MISTAKES)
def test_check_masked_softmax_catches(mistake):
    _catches(checks.check_masked_softmax, SOFTMAX_MISTAKES, mistake)


def _attention(scale=None, flip=False, use_mask=True, zeros_after=False, transpose=False, nan_rows=False):
    """A masked attention with one thing wrong."""

    def attend(Q, K, V, mask=None):
        factor = Q.shape[-1] ** -0.5 if scale is None else scale(Q, V)
        scores = Q @ K.transpose(-2, -1) * factor
        if mask is None or not use_mask:
            weights = scores.softmax(dim=-1)
        elif zeros_after:
            weights = scores.softmax(dim=-1) * mask
        elif nan_rows:
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        else:
            weights = other_masked_softmax(scores, ~mask if flip else mask)
        return weights @ V, weights.transpose(-2, -1) if transpose else weights

    return attend


ATTENTION_MISTAKES = {
    "not scaled": (_attention(scale=lambda Q, V: 1.0), "you did not scale the scores"),
    "divided by d_k": (_attention(scale=lambda Q, V: 1 / Q.shape[-1]), "you divided the scores by d_k"),
    "scaled by √d_v": (_attention(scale=lambda Q, V: V.shape[-1] ** -0.5), "you scaled by √d_v"),
    "mask ignored": (_attention(use_mask=False), "your output ignores the mask"),
    "opposite meaning": (_attention(flip=True), "your mask has the opposite meaning"),
    "zeros after": (_attention(zeros_after=True), "you zeroed the masked weights after the softmax"),
    "weights transposed": (_attention(transpose=True), "your weights are transposed"),
    "NaN on a fully masked row": (_attention(nan_rows=True), "a fully masked row gives NaN"),
    "output only": (lambda Q, K, V, mask=None: _attention()(Q, K, V, mask)[0], "return the pair `(out, weights)`"),
}


@pytest.mark.parametrize("mistake", ATTENTION_MISTAKES)
def test_check_masked_attention_catches(mistake):
    _catches(checks.check_masked_attention, ATTENTION_MISTAKES, mistake)


# ---------------------------------------------------------------- lesson 09


def _waves(n, d, exponent=2.0, start=0, base=10000.0, layout="interleaved", first=torch.sin, second=torch.cos):
    positions = torch.arange(start, start + n, dtype=torch.float64)[:, None]
    angles = positions * base ** (-exponent * torch.arange(d // 2) / d)  # (n, d/2)
    if layout == "halves":
        return torch.cat([first(angles), second(angles)], dim=-1)
    return torch.stack([first(angles), second(angles)], dim=-1).flatten(-2)


def _own_frequency(n, d):
    angles = torch.arange(n, dtype=torch.float64)[:, None] / 10000 ** (torch.arange(d) / d)  # (n, d)
    return torch.where(torch.arange(d) % 2 == 0, angles.sin(), angles.cos())


def _multiplied(n, d):
    angles = torch.arange(n, dtype=torch.float64)[:, None] * 10000 ** (2 * torch.arange(d // 2) / d)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)


SINUSOIDAL_MISTAKES = {
    "sin and cos swapped": (lambda n, d: _waves(n, d, first=torch.cos, second=torch.sin), "sin and cos are swapped"),
    "halves": (lambda n, d: _waves(n, d, layout="halves"), "sines in the first half"),
    "exponent i/d": (lambda n, d: _waves(n, d, exponent=1.0), "should be 2i/d, not i/d"),
    "exponent 4i/d": (lambda n, d: _waves(n, d, exponent=4.0), "the frequency exponent is twice too large"),
    "positions from 1": (lambda n, d: _waves(n, d, start=1), "your positions start at 1"),
    "a frequency per column": (_own_frequency, "each column got its own frequency"),
    "multiplied": (_multiplied, "you multiplied the position by 10000^(2i/d)"),
    "base 1000": (lambda n, d: _waves(n, d, base=1000.0), "`sinusoidal_encoding`'s encoding for n = 4, d = 6 is wrong"),
    "transposed": (lambda n, d: _waves(n, d).T, "one row per position"),
    "numpy": (lambda n, d: _waves(n, d).numpy(), "returned a numpy array"),
}


@pytest.mark.parametrize("mistake", SINUSOIDAL_MISTAKES)
def test_check_sinusoidal_encoding_catches(mistake):
    _catches(checks.check_sinusoidal_encoding, SINUSOIDAL_MISTAKES, mistake)


def _rope(layout="interleaved", sign=1.0, exponent=2.0, start=0, fixed_base=None, plus=False):
    """apply_rope with one thing wrong."""

    def apply_rope(x, base=10000):
        n, d = x.shape[-2:]
        base = fixed_base or base
        angles = sign * torch.arange(start, start + n)[:, None] * base ** (-exponent * torch.arange(d // 2) / d)
        cos, sin = angles.cos(), angles.sin()
        if layout == "half":
            first, second = x[..., : d // 2], x[..., d // 2 :]
            return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
        even, odd = x[..., 0::2], x[..., 1::2]
        first = even * cos + odd * sin if plus else even * cos - odd * sin
        return torch.stack([first, even * sin + odd * cos], dim=-1).flatten(-2)

    return apply_rope


def _rope_over_the_batch(x, base=10000):
    """Positions counted through the whole batch, as if it were one long sequence."""
    return _rope()(x.reshape(-1, x.shape[-1]), base).reshape(x.shape)


ROPE_MISTAKES = {
    "rotate-half pairing": (_rope(layout="half"), "the 'rotate-half' layout"),
    "turns the wrong way": (_rope(sign=-1.0), "each pair turns the wrong way"),
    "base ignored": (_rope(fixed_base=10000), "you used 10000 whatever the `base` argument says"),
    "exponent i/d": (_rope(exponent=1.0), "not base^(−i/d)"),
    "exponent 4i/d": (_rope(exponent=4.0), "the frequency exponent is twice too large"),
    "positions from 1": (_rope(start=1), "your positions start at 1"),
    "not a rotation": (_rope(plus=True), "a rotation keeps the length of every pair"),
    "positions through the batch": (_rope_over_the_batch, "the first sequence of the batch is right"),
    "in place": (lambda x, base=10000: x.mul_(2.0), "changed its input `x` in place"),
}


@pytest.mark.parametrize("mistake", ROPE_MISTAKES)
def test_check_apply_rope_catches(mistake):
    _catches(checks.check_apply_rope, ROPE_MISTAKES, mistake)


# ---------------------------------------------------------------- lesson 10


def _cross(
    scale=None,
    W_k_reads_queries=False,
    bias=False,
    flip=False,
    use_mask=True,
    over_queries=False,
    transpose=False,
    detach=False,
    keys_from_queries=False,
    queries_from_keys=False,
    keys_as_they_are=False,
    names=("W_q", "W_k", "W_v"),
):
    """A CrossAttention class with one thing wrong."""

    class CrossAttention(nn.Module):
        def __init__(self, d_q, d_kv, d_k):
            super().__init__()
            setattr(self, names[0], nn.Linear(d_q, d_k, bias=bias))
            setattr(self, names[1], nn.Linear(d_q if W_k_reads_queries else d_kv, d_k, bias=False))
            setattr(self, names[2], nn.Linear(d_kv, d_k, bias=False))

        def forward(self, x_q, x_kv, mask=None):
            W_q, W_k, W_v = (getattr(self, name) for name in names)
            Q, K, V = W_q(x_kv if queries_from_keys else x_q), W_k(x_q if keys_from_queries else x_kv), W_v(x_kv)
            factor = K.shape[-1] ** -0.5 if scale is None else scale(x_q, x_kv)
            scores = (Q @ K if keys_as_they_are else Q @ K.transpose(-2, -1)) * factor
            if over_queries:
                weights = scores.softmax(dim=-2)
            else:
                keep = None if mask is None or not use_mask else (~mask if flip else mask)
                weights = scores.softmax(dim=-1) if keep is None else other_masked_softmax(scores, keep)
            out = weights @ V
            out = out.detach() if detach else out
            return out, weights.transpose(-2, -1) if transpose else weights

    return CrossAttention


class ForgotSuper(nn.Module):
    def __init__(self, d_q, d_kv, d_k):
        self.W_q = nn.Linear(d_q, d_k, bias=False)


class OutputOnly(nn.Module):
    def __init__(self, d_q, d_kv, d_k):
        super().__init__()
        self.inner = _cross()(d_q, d_kv, d_k)
        self.W_q, self.W_k, self.W_v = self.inner.W_q, self.inner.W_k, self.inner.W_v

    def forward(self, x_q, x_kv, mask=None):
        return self.inner(x_q, x_kv, mask)[0]


CROSS_MISTAKES = {
    "not scaled": (_cross(scale=lambda a, b: 1.0), "you did not scale the scores"),
    "scaled by √d_q": (_cross(scale=lambda a, b: a.shape[-1] ** -0.5), "you scaled by √d_q"),
    "scaled by √d_kv": (_cross(scale=lambda a, b: b.shape[-1] ** -0.5), "you scaled by √d_kv"),
    "W_k reads the queries": (_cross(W_k_reads_queries=True), "`W_k` maps 6 → 4 features"),
    "a bias": (_cross(bias=True), "`W_q` has a bias"),
    "other names": (_cross(names=("query", "key", "value")), "has no attribute `W_q`"),
    "keys from the queries": (
        _cross(keys_from_queries=True),
        "W_k and W_v read x_kv (10 features); you gave one of them x_q (6 features)",
    ),
    "queries from the other sequence": (
        _cross(queries_from_keys=True),
        "W_q reads x_q (6 features); you gave it x_kv (10 features)",
    ),
    "keys not transposed": (_cross(keys_as_they_are=True), "the scores are Q @ K.transpose(-2, -1)"),
    "mask ignored": (_cross(use_mask=False), "your output ignores the mask"),
    "opposite meaning": (_cross(flip=True), "your mask has the opposite meaning"),
    "softmax over the queries": (_cross(over_queries=True), "your softmax runs over the queries"),
    "weights transposed": (_cross(transpose=True), "expected (..., n, m): one row per query"),
    "detached": (_cross(detach=True), "your output does not depend on W_q, W_k, W_v through autograd"),
    "forgot super().__init__()": (ForgotSuper, "raised AttributeError"),
    "output only": (OutputOnly, "return `(out, weights)`"),
}


@pytest.mark.parametrize("mistake", CROSS_MISTAKES)
def test_check_cross_attention_catches(mistake):
    _catches(checks.check_cross_attention, CROSS_MISTAKES, mistake)


def _pairs(queries, keys, W_q, W_k):
    return (queries @ W_q.T)[..., :, None, :], (keys @ W_k.T)[..., None, :, :]  # (..., n, 1, h), (..., 1, m, h)


def _additive(combine):
    def additive_scores(queries, keys, W_q, W_k, w_v):
        q, k = _pairs(queries, keys, W_q, W_k)
        return combine(q, k, w_v)

    return additive_scores


ADDITIVE_MISTAKES = {
    "no tanh": (_additive(lambda q, k, w: (q + k) @ w), "you left out the tanh"),
    "tanh outside": (_additive(lambda q, k, w: torch.tanh((q + k) @ w)), "the tanh goes inside"),
    "product": (_additive(lambda q, k, w: torch.tanh(q * k) @ w), "you multiplied the projected query and key"),
    "summed": (_additive(lambda q, k, w: torch.tanh(q + k).sum(dim=-1)), "you summed the d_a hidden units"),
    "softmax": (_additive(lambda q, k, w: torch.softmax(torch.tanh(q + k) @ w, dim=-1)), "after a softmax"),
    "scaled": (_additive(lambda q, k, w: torch.tanh(q + k) @ w / math.sqrt(len(w))), "you divided by √d_a"),
    "transposed": (
        _additive(lambda q, k, w: (torch.tanh(q + k) @ w).transpose(-2, -1)),
        "one row per query, one column per key",
    ),
    "W_q without transpose": (
        lambda qs, ks, W_q, W_k, w: torch.tanh(qs @ W_q + ks @ W_k) @ w,
        "you multiplied by W_q as it is, (7, 3) = (d_a, d_q): transpose it",
    ),
    "W_k without transpose": (
        lambda qs, ks, W_q, W_k, w: torch.tanh(qs @ W_q.T + ks @ W_k) @ w,
        "you multiplied by W_k as it is, (7, 6) = (d_a, d_kv): transpose it",
    ),
    "pairs not broadcast": (
        lambda qs, ks, W_q, W_k, w: torch.tanh(qs @ W_q.T + ks @ W_k.T) @ w,
        "(…, n, 1, d_a) + (…, 1, m, d_a)",
    ),
    "in place": (_additive(lambda q, k, w: torch.tanh(q + k) @ w.mul_(2)), "changed its input `w_v` in place"),
}


@pytest.mark.parametrize("mistake", ADDITIVE_MISTAKES)
def test_check_additive_scores_catches(mistake):
    _catches(checks.check_additive_scores, ADDITIVE_MISTAKES, mistake)


def test_masked_attention_names_a_wrong_masked_softmax_first():
    namespace = solution("08_masking")  # the learner's functions, defined where their check finds them
    exec(
        "def masked_softmax(scores, mask):\n    return torch.softmax(scores.masked_fill(~mask, float('-inf')), dim=-1)\n",
        namespace,
    )
    with pytest.raises(AssertionError, match=r"your `masked_attention` calls your `masked_softmax`.*exercise 4"):
        checks.check_masked_attention(namespace["masked_attention"])
    right = solution("08_masking")
    checks.check_masked_attention(right["masked_attention"])  # a right masked_softmax: no complaint


def test_padding_mask_off_by_one_speaks_truly_of_a_full_row():
    """j <= lengths[b] leaves a full row as it should be: the message names a row with padding, never a row
    with lengths[b] + 1 True values, which cannot be."""
    with pytest.raises(AssertionError) as caught:
        checks.check_padding_mask(lambda lengths, n: torch.arange(n)[None, :] <= lengths[:, None])
    message = str(caught.value)
    assert "`padding_mask`" in message and "row 0 has 3 real tokens" in message and "+ 1" not in message
    assert "row 2" not in message  # lengths = [3, 1, 4], n = 4: row 2 is full, and right as it is


def test_masked_attention_given_no_mask_is_told_that_none_means_no_mask():
    """The classic: mask=None passed straight on to the learner's masked_softmax, which crashes on `~None`.
    The message says what None means, not which line of masked_softmax fell over."""
    namespace = solution("08_masking")  # a right masked_softmax
    exec(
        "def masked_attention(Q, K, V, mask=None):\n"
        "    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])\n"
        "    weights = masked_softmax(scores, mask)\n"
        "    return weights @ V, weights\n",
        namespace,
    )
    with pytest.raises(AssertionError) as caught:
        checks.check_masked_attention(namespace["masked_attention"])
    message = str(caught.value)
    assert "mask=None means no mask: every query may attend to every key" in message
    assert "fails when it is given no mask" in message and "at your line" not in message


def test_masked_attention_that_fails_with_a_mask_too_keeps_its_own_message():
    def broken(Q, K, V, mask=None):
        raise ValueError("something else")

    with pytest.raises(AssertionError, match="raised ValueError: something else") as caught:
        checks.check_masked_attention(broken)
    assert "mask=None" not in str(caught.value)


def test_sliding_window_mask_names_a_wrong_causal_mask_first():
    window_from_causal = (
        "def sliding_window_mask(n, window):\n"
        "    return causal_mask(n) & ~torch.ones(n, n, dtype=torch.bool).tril(-window)\n"
    )
    namespace = solution("08_masking")
    exec(window_from_causal, namespace)
    checks.check_sliding_window_mask(namespace["sliding_window_mask"])  # a right causal_mask: no complaint
    exec("def causal_mask(n):\n    return torch.ones(n, n, dtype=torch.bool).triu()\n", namespace)  # j >= i
    with pytest.raises(AssertionError, match=r"your `sliding_window_mask` calls your `causal_mask`.*exercise 1"):
        checks.check_sliding_window_mask(namespace["sliding_window_mask"])


def test_a_result_instead_of_the_function_is_named():
    with pytest.raises(AssertionError, match="write the name without brackets"):
        checks.check_causal_mask(torch.ones(3, 3, dtype=torch.bool))
