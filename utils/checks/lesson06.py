"""Checks for lesson 06, queries, keys and values: the `SelfAttention` module."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks._harness import (
    CheckError,
    close,
    describe,
    expect_close,
    fail,
    generator,
    passed,
    require_function,
)
from utils.checks.lesson05 import call_with_hint, diagnose_weights, expect_pair, expect_rows_sum_to_one

SUPER_HINT = "start `__init__` with `super().__init__()`, before you create the layers."


def build_module(cls, name: str, arguments: dict) -> nn.Module:
    """Construct the learner's module without moving the notebook's random state; check it is an `nn.Module`."""
    __tracebackhide__ = True
    with torch.random.fork_rng(devices=[]):
        try:
            module = call_with_hint(cls, name, arguments)
        except CheckError as error:
            if "before Module.__init__() call" in str(error):
                raise CheckError(f"{error}\n  Hint: {SUPER_HINT}") from None
            raise
    if not isinstance(module, nn.Module):
        fail(
            f"`{name}({describe(arguments)})` gave {type(module).__name__}, not a module: write "
            f"`class {name}(nn.Module):` and build it with `{name}(...)`."
        )
    return module


def expect_linear(
    module: nn.Module, name: str, attribute: str, d_in: int, d_out: int, *, bias: bool, how: str
) -> nn.Linear:
    """`module.<attribute>` is an `nn.Linear(d_in, d_out)` with (or without) a bias."""
    __tracebackhide__ = True
    layer = getattr(module, attribute, None)
    if layer is None:
        fail(f"your `{name}` has no attribute `{attribute}`: create it in `__init__` as `self.{attribute} = {how}`.")
    if not isinstance(layer, nn.Linear):
        fail(f"`{attribute}` in your `{name}` is a {type(layer).__name__}; make it `self.{attribute} = {how}`.")
    if bias and layer.bias is None:
        fail(f"`{attribute}` in your `{name}` has no bias; make it `{how}` (nn.Linear has a bias unless told not to).")
    if not bias and layer.bias is not None:
        fail(
            f"`{attribute}` in your `{name}` has a bias; make it `{how}`: the projection is a plain matrix, "
            "x W, with nothing added."
        )
    if tuple(layer.weight.shape) != (d_out, d_in):
        fail(
            f"`{attribute}` in your `{name}` maps {layer.in_features} features to {layer.out_features}; it should map "
            f"{d_in} to {d_out}: `{how}`."
        )
    return layer


def fill_weights(module: nn.Module, rng: torch.Generator) -> None:
    """Give every parameter of `module` fresh values from the check's own generator."""
    values = {}
    for key, parameter in module.named_parameters():
        fan_in = parameter.shape[-1] if parameter.dim() > 1 else 4
        values[key] = torch.randn(parameter.shape, generator=rng) / math.sqrt(fan_in)
    module.load_state_dict(values, strict=False)  # in place, as a copy_ would (and through the grader's proxy)


def expect_gradient(module: nn.Module, out: torch.Tensor, name: str, attributes: tuple[str, ...]) -> None:
    """The output depends on every projection's weight through autograd (nothing detached)."""
    __tracebackhide__ = True
    module.zero_grad()
    if not out.requires_grad:
        fail(
            f"the output of your `{name}` carries no gradient: training could not change the projections. "
            "Do not use `.detach()`, `.data`, `torch.no_grad()` or numpy inside `forward`."
        )
    probe = torch.randn(out.shape, generator=generator(99))
    (out * probe).sum().backward()
    for attribute in attributes:
        grad = getattr(module, attribute).weight.grad
        if grad is None or not grad.abs().sum() > 0:
            fail(
                f"no gradient reaches `{attribute}` of your `{name}`: is it used in `forward` (and not replaced by a "
                "new layer made there, or detached)?"
            )
    module.zero_grad()


def check_self_attention(SelfAttention) -> None:
    """`SelfAttention(d_in, d_k, d_v)`: bias-free `W_q, W_k, W_v`; forward equals SDPA on the module's own projections."""
    __tracebackhide__ = True
    name = "SelfAttention"
    require_function(SelfAttention, name, kind="class")
    rng = generator(8)
    configs = ((6, 4, 3), (5, 8, 2), (3, 4, 7))  # (d_in, d_k, d_v): all different, so every mix-up shows
    for d_in, d_k, d_v in configs:
        module = build_module(SelfAttention, name, {"d_in": d_in, "d_k": d_k, "d_v": d_v})
        W_q = expect_linear(module, name, "W_q", d_in, d_k, bias=False, how="nn.Linear(d_in, d_k, bias=False)")
        W_k = expect_linear(module, name, "W_k", d_in, d_k, bias=False, how="nn.Linear(d_in, d_k, bias=False)")
        W_v = expect_linear(module, name, "W_v", d_in, d_v, bias=False, how="nn.Linear(d_in, d_v, bias=False)")
        fill_weights(module, rng)
        for batch in ((), (2,), (2, 3)):
            n = 5 if len(batch) != 1 else 4
            X = torch.randn(*batch, n, d_in, generator=rng)
            inputs = {"X": X}
            where = f"SelfAttention({d_in}, {d_k}, {d_v}) on {describe(inputs)}"
            result = call_with_hint(module, name, inputs, batched=bool(batch))
            if isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[0], torch.Tensor):
                if result[0].shape[-1] == d_in and d_in != d_v:
                    fail(
                        f"your output's rows have {d_in} features (d_in) for {where}; they should have d_v = {d_v}: "
                        "the values are the projections V = self.W_v(X), not X itself."
                    )
            out, weights = expect_pair(result, name, (*batch, n, d_v), (*batch, n, n), where)
            with torch.no_grad():
                Q, K, V = W_q(X), W_k(X), W_v(X)  # (..., n, d_k), (..., n, d_k), (..., n, d_v)
                scores = Q @ K.mT  # (..., n, n)
                expected_weights = F.softmax(scores / math.sqrt(d_k), dim=-1)
                expected_out = F.scaled_dot_product_attention(Q, K, V)  # (..., n, d_v)
            if not close(weights, expected_weights):
                raw = "your scores compare the raw inputs X; compare queries with keys, Q = self.W_q(X) and K = self.W_k(X)."
                suspects = [
                    (
                        "you scaled the scores by √d_in, the width of the input; scale by √d_k, the width of the "
                        "queries and keys.",
                        F.softmax(scores / math.sqrt(d_in), dim=-1),
                    ),
                    (
                        "you scaled the scores by √d_v, the width of the values; scale by √d_k, the width of the "
                        "queries and keys.",
                        F.softmax(scores / math.sqrt(d_v), dim=-1),
                    ),
                    ("you did not divide the scores by √d_k.", F.softmax(scores, dim=-1)),
                    (
                        "you divided the scores by d_k; divide by its square root, √d_k.",
                        F.softmax(scores / d_k, dim=-1),
                    ),
                    (
                        "your keys are the queries: compute the keys with `self.W_k`.",
                        F.softmax(Q @ Q.mT / math.sqrt(d_k), dim=-1),
                    ),
                    *((raw, F.softmax(X @ X.mT / scale, dim=-1)) for scale in (1.0, math.sqrt(d_k), math.sqrt(d_in))),
                    (
                        "your weights are transposed: the scores are Q Kᵀ, row i for query i (you computed K Qᵀ).",
                        F.softmax(scores.mT / math.sqrt(d_k), dim=-1),
                    ),
                ]
                diagnose_weights(weights, name, where, suspects)
                expect_rows_sum_to_one(weights, name, where, hint="Apply the softmax over the keys, `dim=-1`")
                expect_close(
                    weights,
                    expected_weights,
                    name,
                    what="weight matrix",
                    where=where,
                    hint="weights = softmax(Q Kᵀ / √d_k) with Q = self.W_q(X), K = self.W_k(X); call the layers "
                    "(`self.W_q(X)`) rather than multiplying by `.weight`, which nn.Linear stores as (out, in).",
                )
            if not close(out, expected_out):
                hint = "out = weights @ V with V = self.W_v(X)."
                if d_v == d_k and close(out, weights @ K):
                    hint = "you averaged the keys; average the values, V = self.W_v(X)."
                expect_close(out, expected_out, name, what="output", where=where, hint=hint)
        expect_gradient(module, out, name, ("W_q", "W_k", "W_v"))
    passed(
        name,
        "bias-free W_q, W_k, W_v; forward equals F.scaled_dot_product_attention on its own Q, K, V, batched or not",
    )
