"""Lessons 05 to 07: each check passes the solutions and right answers written differently,
and catches each classic mistake with the message the learner should read."""

import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks

# Some wrong answers below use `.T` on batched tensors on purpose; PyTorch warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")

L05 = solution("05_dot_product_attention")
L06 = solution("06_queries_keys_values")
L07 = solution("07_multi_head_attention")


def test_the_solutions_pass(capsys):
    checks.check_softmax(L05["softmax"])
    checks.check_dot_product_attention(L05["dot_product_attention"])
    checks.check_scaled_dot_product_attention(L05["scaled_dot_product_attention"])
    checks.check_self_attention(L06["SelfAttention"])
    checks.check_split_heads(L07["split_heads"], L07["merge_heads"])
    checks.check_multi_head_attention(L07["MultiHeadAttention"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith("✔") for line in lines)


def test_the_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_self_attention(L06["SelfAttention"])
    checks.check_multi_head_attention(L07["MultiHeadAttention"])
    assert torch.equal(torch.rand(3), expected)


# --- right answers written differently -----------------------------------------------------------


def sdpa_with_weights(Q, K, V):
    """Right, through PyTorch's own operators."""
    weights = torch.softmax(torch.einsum("...nd,...md->...nm", Q, K) / Q.shape[-1] ** 0.5, dim=-1)
    return F.scaled_dot_product_attention(Q, K, V), weights


class EinsumSelfAttention(nn.Module):
    """Right: einsum instead of matmul, the scale folded into the queries."""

    def __init__(self, d_in, d_k, d_v):
        super().__init__()
        self.W_q = nn.Linear(d_in, d_k, bias=False)
        self.W_k = nn.Linear(d_in, d_k, bias=False)
        self.W_v = nn.Linear(d_in, d_v, bias=False)

    def forward(self, X):
        Q = self.W_q(X) / math.sqrt(self.W_q.out_features)
        weights = torch.einsum("...id,...jd->...ij", Q, self.W_k(X)).softmax(dim=-1)
        return torch.einsum("...ij,...jd->...id", weights, self.W_v(X)), weights


def split_heads_einops_style(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).permute(0, 2, 1, 3)


def merge_heads_with_num_heads(x, num_heads):
    """Right, and taking `num_heads` too (the contract allows it)."""
    B, h, T, d_k = x.shape
    assert h == num_heads
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, h * d_k)


class MultiHeadAttentionWithSDPA(nn.Module):
    """Right: the heads computed one at a time in a loop, with -1e9 for masked scores."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.h, self.d_k = num_heads, d_model // num_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, x, mask=None):
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        outs, maps = [], []
        for i in range(self.h):
            block = slice(i * self.d_k, (i + 1) * self.d_k)
            scores = q[..., block] @ k[..., block].transpose(1, 2) / math.sqrt(self.d_k)
            if mask is not None:
                allowed = mask.expand(x.shape[0], self.h, x.shape[1], x.shape[1])[:, i]
                scores = torch.where(allowed, scores, torch.tensor(-1e9))
            weights = scores.softmax(dim=-1)
            outs.append(weights @ v[..., block])
            maps.append(weights)
        return self.out_proj(torch.cat(outs, dim=-1)), torch.stack(maps, dim=1)


def test_other_right_answers_pass():
    checks.check_softmax(lambda scores, dim=-1: torch.exp(scores - torch.logsumexp(scores, dim=dim, keepdim=True)))
    checks.check_dot_product_attention(lambda X: sdpa_with_weights(X * X.shape[-1] ** 0.5, X, X))
    checks.check_scaled_dot_product_attention(sdpa_with_weights)
    checks.check_self_attention(EinsumSelfAttention)
    checks.check_split_heads(split_heads_einops_style, merge_heads_with_num_heads)
    checks.check_multi_head_attention(MultiHeadAttentionWithSDPA)


# --- softmax -------------------------------------------------------------------------------------


def _naive(scores, dim=-1):
    return torch.exp(scores) / torch.exp(scores).sum(dim=dim, keepdim=True)


def _shifted(shift):
    def softmax(scores, dim=-1):
        exps = torch.exp(scores - shift(scores, dim))
        return exps / exps.sum(dim=dim, keepdim=True)

    return softmax


def _softmax_in_place(scores, dim=-1):
    scores -= scores.amax(dim=dim, keepdim=True)
    return torch.exp(scores) / torch.exp(scores).sum(dim=dim, keepdim=True)


SOFTMAX_MISTAKES = {
    "no max subtraction": (_naive, "exp(1000) overflows to infinity"),
    "max of the whole tensor": (_shifted(lambda s, dim: s.max()), "you subtracted the max of the whole tensor"),
    "mean instead of max": (_shifted(lambda s, dim: s.mean(dim=dim, keepdim=True)), "a score of -inf must get weight"),
    "max along another dim": (
        _shifted(lambda s, dim: s.amax(dim=0, keepdim=True)),
        "you subtracted the max taken along dim=0",
    ),
    "max without keepdim": (_shifted(lambda s, dim: s.amax(dim=dim)), "keep it with `keepdim=True`"),
    "max returns a pair": (_shifted(lambda s, dim: s.max(dim=dim, keepdim=True)), "returns a pair (values, indices)"),
    "wrong default dim": (lambda s, dim=0: F.softmax(s, dim=dim), "sum to 1 along dim=0, not along dim=-1"),
    "dim ignored": (lambda s, dim=-1: F.softmax(s, dim=-1), "did it ignore its `dim` argument?"),
    "not normalised": (
        lambda s, dim=-1: torch.exp(s - s.amax(dim=dim, keepdim=True)),
        "you forgot to divide by the sum",
    ),
    "no exponential": (lambda s, dim=-1: s / s.sum(dim=dim, keepdim=True), "you normalised the scores themselves"),
    "in place": (_softmax_in_place, "changed its input `scores` in place"),
    "a numpy array": (lambda s, dim=-1: F.softmax(s, dim=dim).numpy(), "returned a numpy array"),
}


@pytest.mark.parametrize("mistake", SOFTMAX_MISTAKES)
def test_check_softmax_catches(mistake):
    wrong, message = SOFTMAX_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_softmax(wrong)


def test_check_softmax_names_a_missing_keepdim_on_square_scores():
    """On square scores a missing keepdim raises no error: the check still names it."""

    def wrong(scores, dim=-1):
        if scores.dim() == 2 and scores.shape[0] == scores.shape[1]:
            exps = torch.exp(scores - scores.amax(dim=-1))  # subtracts row j's max from column j
            return exps / exps.sum(dim=-1, keepdim=True)
        return F.softmax(scores, dim=dim)

    with pytest.raises(AssertionError, match=re.escape("the max of each row was subtracted from a column")):
        checks.check_softmax(wrong)


# --- dot_product_attention -----------------------------------------------------------------------


def _dpa(scores_of, *, dim=-1, values=lambda w, X: w @ X, order="out, weights"):
    def dot_product_attention(X):
        weights = F.softmax(scores_of(X), dim=dim)
        out = values(weights, X)
        return (out, weights) if order == "out, weights" else (weights, out)

    return dot_product_attention


DOT_MISTAKES = {
    "scaled by √d": (_dpa(lambda X: X @ X.mT / math.sqrt(X.shape[-1])), "this first version is not scaled"),
    ".T on a batch": (_dpa(lambda X: X @ X.T), "`.T` reverses *all* the dimensions"),
    "no transpose": (_dpa(lambda X: X @ X), "the second X is the operand to transpose"),
    "softmax over the queries": (_dpa(lambda X: X @ X.mT, dim=-2), "your *columns* sum to 1"),
    "no softmax": (lambda X: ((X @ X.mT) @ X, X @ X.mT), "your weights are the raw scores"),
    "weights transposed in the product": (
        _dpa(lambda X: X @ X.mT, values=lambda w, X: w.mT @ X),
        "you multiplied by the transposed weights",
    ),
    "(weights, out)": (_dpa(lambda X: X @ X.mT, order="weights, out"), "return them the other way round"),
    "only the output": (lambda X: F.softmax(X @ X.mT, dim=-1) @ X, "attention returns a pair"),
    "forgot return": (lambda X: None, "did you forget `return out, weights`?"),
    "weights as the output": (_dpa(lambda X: X @ X.mT, values=lambda w, X: w), "expected shape (4, 3)"),
}


@pytest.mark.parametrize("mistake", DOT_MISTAKES)
def test_check_dot_product_attention_catches(mistake):
    wrong, message = DOT_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_dot_product_attention(wrong)


# --- scaled_dot_product_attention ----------------------------------------------------------------


def _sdpa(scale_of=lambda Q, K, V: math.sqrt(Q.shape[-1]), *, scores_of=None, dim=-1, values=lambda w, K, V: w @ V):
    def scaled_dot_product_attention(Q, K, V):
        scores = scores_of(Q, K) if scores_of else Q @ K.transpose(-2, -1)
        weights = F.softmax(scores / scale_of(Q, K, V), dim=dim)
        return values(weights, K, V), weights

    return scaled_dot_product_attention


SCALED_MISTAKES = {
    "no scaling": (_sdpa(lambda Q, K, V: 1.0), "you did not divide the scores by √d_k"),
    "divided by d_k": (_sdpa(lambda Q, K, V: Q.shape[-1]), "divide by its square root, √d_k"),
    "multiplied by √d_k": (_sdpa(lambda Q, K, V: 1 / math.sqrt(Q.shape[-1])), "you multiplied the scores by √d_k"),
    "√d_v": (_sdpa(lambda Q, K, V: math.sqrt(V.shape[-1])), "you divided by √d_v, the width of the values"),
    "Q.shape[1]": (_sdpa(lambda Q, K, V: math.sqrt(Q.shape[1])), "you divided by √n, the number of queries"),
    "K.shape[1]": (_sdpa(lambda Q, K, V: math.sqrt(K.shape[1])), "you divided by √m, the number of keys"),
    "K Qᵀ": (_sdpa(scores_of=lambda Q, K: K @ Q.transpose(-2, -1)), "not K Qᵀ"),
    ".T on a batch": (_sdpa(scores_of=lambda Q, K: Q @ K.T), "`.T` reverses *all* the dimensions"),
    "K not transposed": (_sdpa(scores_of=lambda Q, K: Q @ K), "K is the operand to transpose"),
    "softmax over the queries": (_sdpa(dim=-2), "your *columns* sum to 1"),
    "averaged the keys": (_sdpa(values=lambda w, K, V: w @ K), "the weights average the values"),
}


@pytest.mark.parametrize("mistake", SCALED_MISTAKES)
def test_check_scaled_dot_product_attention_catches(mistake):
    wrong, message = SCALED_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_scaled_dot_product_attention(wrong)


# --- SelfAttention -------------------------------------------------------------------------------


def self_attention(*, bias=False, v_width="d_v", super_init=True, names=("W_q", "W_k", "W_v"), forward=None):
    """A SelfAttention class with one thing changed."""

    class SelfAttention(nn.Module):
        def __init__(self, d_in, d_k, d_v):
            if super_init:
                super().__init__()
            widths = {"d_k": d_k, "d_v": d_v}
            for attribute, width in zip(names, (d_k, d_k, widths[v_width])):
                setattr(self, attribute, nn.Linear(d_in, width, bias=bias))
            self.d_in, self.d_k = d_in, d_k

        def forward(self, X):
            if forward is not None:
                return forward(self, X)
            return sdpa_with_weights(self.W_q(X), self.W_k(X), self.W_v(X))

    return SelfAttention


def _scaled_by(scale_of):
    def forward(self, X):
        Q, K, V = self.W_q(X), self.W_k(X), self.W_v(X)
        weights = F.softmax(Q @ K.transpose(-2, -1) / scale_of(self, V), dim=-1)
        return weights @ V, weights

    return forward


def _fresh_layers(self, X):
    W_q = nn.Linear(self.d_in, self.d_k, bias=False)  # made anew at every call: not the module's weights
    return sdpa_with_weights(W_q(X), self.W_k(X), self.W_v(X))


SELF_ATTENTION_MISTAKES = {
    "bias": (self_attention(bias=True), "has a bias; make it `nn.Linear(d_in, d_k, bias=False)`"),
    "no super().__init__()": (self_attention(super_init=False), "start `__init__` with `super().__init__()`"),
    "W_v of width d_k": (self_attention(v_width="d_k"), "it should map 6 to 3: `nn.Linear(d_in, d_v, bias=False)`"),
    "other names": (self_attention(names=("query", "key", "value")), "has no attribute `W_q`"),
    "scaled by √d_in": (self_attention(forward=_scaled_by(lambda self, V: math.sqrt(self.d_in))), "√d_in"),
    "scaled by √d_v": (self_attention(forward=_scaled_by(lambda self, V: math.sqrt(V.shape[-1]))), "by √d_v"),
    "not scaled": (self_attention(forward=_scaled_by(lambda self, V: 1.0)), "you did not divide the scores by √d_k"),
    "keys from W_q": (
        self_attention(forward=lambda self, X: sdpa_with_weights(self.W_q(X), self.W_q(X), self.W_v(X))),
        "your keys are the queries",
    ),
    "raw X compared": (
        self_attention(forward=lambda self, X: sdpa_with_weights(X, X, self.W_v(X))),
        "your scores compare the raw inputs X",
    ),
    "values are X": (
        self_attention(forward=lambda self, X: sdpa_with_weights(self.W_q(X), self.W_k(X), X)),
        "the values are the projections V = self.W_v(X), not X itself",
    ),
    "multiplied by .weight": (
        self_attention(forward=lambda self, X: sdpa_with_weights(X @ self.W_q.weight, self.W_k(X), self.W_v(X))),
        "call the layer, `self.W_q(X)`",
    ),
    ".T on a batch": (
        self_attention(
            forward=lambda self, X: (
                F.softmax(self.W_q(X) @ self.W_k(X).T / math.sqrt(self.d_k), dim=-1) @ self.W_v(X),
                F.softmax(self.W_q(X) @ self.W_k(X).T / math.sqrt(self.d_k), dim=-1),
            )
        ),
        "it works on a single sequence but fails on a batch",
    ),
    "detached": (
        self_attention(forward=lambda self, X: sdpa_with_weights(self.W_q(X).detach(), self.W_k(X), self.W_v(X))),
        "no gradient reaches `W_q`",
    ),
    "layers made in forward": (self_attention(forward=_fresh_layers), "call the layers"),
    "only the output": (
        self_attention(forward=lambda self, X: sdpa_with_weights(self.W_q(X), self.W_k(X), self.W_v(X))[0]),
        "attention returns a pair",
    ),
}


@pytest.mark.parametrize("mistake", SELF_ATTENTION_MISTAKES)
def test_check_self_attention_catches(mistake):
    wrong, message = SELF_ATTENTION_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_self_attention(wrong)


def test_check_self_attention_wants_the_class():
    with pytest.raises(AssertionError, match=re.escape("gave Tensor, not a module")):
        checks.check_self_attention(lambda d_in, d_k, d_v: torch.zeros(d_in))


# --- split_heads / merge_heads ------------------------------------------------------------------


def split_right(x, num_heads):
    B, T, D = x.shape
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)


def merge_right(x):
    B, h, T, d_k = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d_k)


SPLIT_MISTAKES = {
    "reshape without transpose": (
        lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
        merge_right,
        "positions are scrambled across heads",
    ),
    "no transpose at all": (
        lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h),
        merge_right,
        "the heads come before the positions",
    ),
    "interleaved features": (
        lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),
        merge_right,
        "yours holds every h-th feature",
    ),
    "merge: reshape without transpose": (
        split_right,
        lambda x: x.reshape(x.shape[0], x.shape[2], -1),
        "you reshaped (B, h, T, d_k) straight to (B, T, D)",
    ),
    "merge: view after transpose": (
        split_right,
        lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1),
        "use `.reshape(...)` (or `.contiguous().view(...)`)",
    ),
    "merge: heads in the wrong order": (
        split_right,
        lambda x: x.flip(1).transpose(1, 2).reshape(x.shape[0], x.shape[2], -1),
        "the heads side by side, head 0 first",
    ),
}


@pytest.mark.parametrize("mistake", SPLIT_MISTAKES)
def test_check_split_heads_catches(mistake):
    split, merge, message = SPLIT_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_split_heads(split, merge)


# --- MultiHeadAttention -------------------------------------------------------------------------


def multi_head(
    *,
    bias=True,
    out_proj=True,
    use_out_proj=True,
    use_v_proj=True,
    scale="d_k",
    split=split_right,
    merge=merge_right,
    fill=float("-inf"),
    mask_rule="right",
    average=False,
):
    """A MultiHeadAttention class with one thing changed."""

    class MultiHeadAttention(nn.Module):
        def __init__(self, d_model, num_heads):
            super().__init__()
            self.d_model, self.num_heads = d_model, num_heads
            self.q_proj = nn.Linear(d_model, d_model, bias=bias)
            self.k_proj = nn.Linear(d_model, d_model, bias=bias)
            self.v_proj = nn.Linear(d_model, d_model, bias=bias)
            if out_proj:
                self.out_proj = nn.Linear(d_model, d_model, bias=bias)

        def forward(self, x, mask=None):
            h = self.num_heads
            q, k = split(self.q_proj(x), h), split(self.k_proj(x), h)
            v = split(self.v_proj(x) if use_v_proj else x, h)
            d = {"d_k": q.shape[-1], "d_model": self.d_model, "none": 1.0}[scale]
            scores = q @ k.transpose(-2, -1) / math.sqrt(d)
            if mask is not None and mask_rule == "right":
                scores = scores.masked_fill(~mask, fill)
            if mask is not None and mask_rule == "opposite":
                scores = scores.masked_fill(mask, fill)
            if mask is not None and mask_rule == "only 2-D":
                scores = scores.masked_fill(~mask.view(1, 1, *mask.shape[-2:]), fill)
            weights = F.softmax(scores, dim=-1)
            if mask is not None and mask_rule == "after softmax":
                weights = weights * mask
            out = merge(weights @ v)
            if use_out_proj:
                out = self.out_proj(out)
            return out, weights.mean(dim=1) if average else weights

    return MultiHeadAttention


MHA_MISTAKES = {
    "scaled by √d_model": (multi_head(scale="d_model"), "you scaled the scores by √d_model"),
    "not scaled": (multi_head(scale="none"), "you did not divide the scores by √d_k"),
    "no out_proj at all": (multi_head(out_proj=False), "has no `out_proj`"),
    "out_proj unused": (multi_head(use_out_proj=False), "skips `out_proj`"),
    "values skip v_proj": (multi_head(use_v_proj=False), "your values skip `v_proj`"),
    "no bias": (multi_head(bias=False), "has no bias"),
    "split: reshape without transpose": (
        multi_head(split=SPLIT_MISTAKES["reshape without transpose"][0]),
        "positions are scrambled across heads",
    ),
    "merge: reshape without transpose": (
        multi_head(merge=SPLIT_MISTAKES["merge: reshape without transpose"][1]),
        "positions are scrambled across heads when they are merged",
    ),
    "mask ignored": (multi_head(mask_rule="ignored"), "ignores its mask"),
    "mask of the opposite meaning": (multi_head(mask_rule="opposite"), "reads the mask the opposite way"),
    "masked with 0": (multi_head(fill=0.0), "a score of 0 still gets weight"),
    "masked after the softmax": (multi_head(mask_rule="after softmax"), "Mask the scores before the softmax"),
    "mask assumed (T, T)": (multi_head(mask_rule="only 2-D"), "broadcasts to (B, h, T, T)"),
    "weights averaged over heads": (multi_head(average=True), "not their average"),
}


@pytest.mark.parametrize("mistake", MHA_MISTAKES)
def test_check_multi_head_attention_catches(mistake):
    wrong, message = MHA_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_multi_head_attention(wrong)


WRONG_HEADS = {
    "split_heads": (
        "def split_heads(x, num_heads):\n    B, T, D = x.shape\n    return x.reshape(B, num_heads, T, D // num_heads)\n",
        r"your `MultiHeadAttention` calls your `split_heads`, and your `split_heads` is wrong: fix it first "
        r"\(exercise 1\).\n  .*positions are scrambled across heads",
    ),
    "merge_heads": (
        "def merge_heads(x):\n    B, h, T, d_k = x.shape\n    return x.reshape(B, T, h * d_k)\n",
        r"your `MultiHeadAttention` calls your `merge_heads`, and your `merge_heads` is wrong: fix it first "
        r"\(exercise 1\).\n  .*your `merge_heads` is wrong",
    ),
}


@pytest.mark.parametrize("wrong", WRONG_HEADS)
def test_check_multi_head_attention_names_a_wrong_earlier_function_first(wrong):
    namespace = solution("07_multi_head_attention")  # the learner's functions, defined where their check finds them
    source, message = WRONG_HEADS[wrong]
    exec(source, namespace)
    with pytest.raises(AssertionError, match=message):
        checks.check_multi_head_attention(namespace["MultiHeadAttention"])


def test_the_mistaken_modules_are_right_apart_from_their_mistake():
    """The factories' unchanged versions pass, so each test above isolates one mistake."""
    checks.check_self_attention(self_attention())
    checks.check_split_heads(split_right, merge_right)
    checks.check_multi_head_attention(multi_head())


@pytest.mark.parametrize("check", ["check_dot_product_attention", "check_scaled_dot_product_attention"])
def test_a_wrong_softmax_is_named_before_the_attention_that_calls_it(check):
    """Lesson 05: a right attention that calls a wrong `softmax` is told to fix the softmax first."""
    namespace = solution("05_dot_product_attention")
    namespace["softmax"] = lambda scores, dim=-1: torch.softmax(scores, dim=0)  # over the wrong axis
    exercise = check.removeprefix("check_")
    with pytest.raises(AssertionError) as error:
        getattr(checks, check)(namespace[exercise])
    assert f"your `{exercise}` calls your `softmax`, and your `softmax` is wrong: fix it first (exercise 1)" in str(
        error.value
    )
