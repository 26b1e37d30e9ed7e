"""Checks for lesson 01, averaging: `average` and `uniform_weights`."""

from __future__ import annotations

import torch

from utils.checks._harness import (
    call,
    close,
    describe,
    expect_close,
    expect_tensor,
    fail,
    generator,
    passed,
    require_function,
)

SHAPES = ((1, 3), (4, 2), (5, 8), (6, 6))


def check_average(average) -> None:
    """`average(X (n, d)) -> (d,)`: the mean over positions, compared with `torch.mean`."""
    __tracebackhide__ = True
    require_function(average, "average")
    rng = generator(1)
    for n, d in SHAPES:
        X = torch.randn(n, d, generator=rng)
        inputs = {"X": X}
        where = describe(inputs)
        out = expect_tensor(call(average, "average", inputs), "average", where=where)
        if tuple(out.shape) == (n,) and n != d:
            fail(
                f"your `average` returned shape ({n},) for {where}: you averaged over the features (dim=1); "
                "average over the positions (dim=0) so one d-vector comes back."
            )
        if tuple(out.shape) in ((1, d), (d, 1)):
            fail(
                f"your `average` returned shape {tuple(out.shape)} for {where}; expected ({d},): drop the extra "
                "dimension (no keepdim)."
            )
        expect_tensor(out, "average", (d,), where=where)
        hint = ""
        if close(out, X.mean(dim=0)):
            continue
        if close(out, X.sum(dim=0)):
            hint = f"this is the sum over positions: divide it by n = {n}, the number of positions."
        elif close(out, X.sum(dim=0) / d):
            hint = f"you divided by d = {d}, the number of features; divide by n = {n}, the number of positions."
        elif close(out, X.mean(dim=1)):
            hint = "this is the mean of each position's features (dim=1); average over the positions (dim=0)."
        expect_close(out, X.mean(dim=0), "average", where=where, hint=hint)
    passed("average", f"equals torch.mean over positions on {len(SHAPES)} shapes")


def check_uniform_weights(uniform_weights) -> None:
    """`uniform_weights(n) -> (n, n)` with every entry 1/n; `W @ X` gives every position the mean."""
    __tracebackhide__ = True
    require_function(uniform_weights, "uniform_weights")
    rng = generator(2)
    sizes = (1, 2, 5, 8)
    for n in sizes:
        inputs = {"n": n}
        where = describe(inputs)
        W = expect_tensor(
            call(uniform_weights, "uniform_weights", inputs),
            "uniform_weights",
            what="weights",
            where=where,
            floating=False,
        )
        if W.dim() != 2 or tuple(W.shape) != (n, n):
            fail(
                f"your `uniform_weights` returned shape {tuple(W.shape)} for {where}; expected ({n}, {n}): "
                "one row of weights for each position, one column for each position it averages."
            )
        W = expect_tensor(W, "uniform_weights", what="weights", where=where)
        sums = W.sum(dim=-1)
        for i in range(n):
            if abs(float(sums[i]) - 1) > 1e-5:
                hint = (
                    "every entry should be 1/n."
                    if abs(float(sums[i]) - n) < 1e-4
                    else "each of the n entries of a row should be 1/n, so that the row sums to 1."
                )
                if n > 1 and abs(float(sums[i]) - 1 / n) < 1e-5:
                    hint = "every entry should be 1/n, not 1/n²."
                fail(f"row {i} of your weights sums to {float(sums[i]):.4g} for {where}, not 1: {hint}")
        expect_close(
            W,
            torch.full((n, n), 1.0 / n),
            "uniform_weights",
            what="weights",
            where=where,
            hint="a uniform average gives the same weight, 1/n, to every position.",
        )
        X = torch.randn(n, 3, generator=rng, dtype=W.dtype)
        expect_close(W @ X, X.mean(dim=0).expand(n, 3), "uniform_weights", what="weighted average W @ X", where=where)
    passed("uniform_weights", f"rows sum to 1, every entry 1/n, W @ X is the mean (n = {', '.join(map(str, sizes))})")
