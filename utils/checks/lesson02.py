"""Checks for lesson 02, weighted averages: `normalize_rows` and `causal_average_weights`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.checks._harness import (
    CheckError,
    call,
    check_earlier_first,
    close,
    describe,
    expect_close,
    expect_tensor,
    fail,
    generator,
    passed,
    require_function,
)

KEEPDIM_HINT = (
    "S.sum(dim=-1) has shape (n,), which lines up with the columns of S, not its rows. Keep the summed "
    "dimension, `S.sum(dim=-1, keepdim=True)` of shape (n, 1), so that each row is divided by its own sum."
)


def check_normalize_rows(normalize_rows) -> None:
    """`normalize_rows(S (n, m))`: rows sum to 1 and keep their proportions (`F.normalize(S, p=1)`)."""
    __tracebackhide__ = True
    require_function(normalize_rows, "normalize_rows")
    rng = generator(3)
    shapes = ((1, 1), (3, 5), (4, 4), (6, 2))
    for n, m in shapes:
        S = torch.rand(n, m, generator=rng) * 4 + 0.05
        inputs = {"S": S}
        where = describe(inputs)
        try:
            result = call(normalize_rows, "normalize_rows", inputs)
        except CheckError as error:
            if "must match the size" not in str(error):
                raise
            raise CheckError(f"{error}\n  Hint: {KEEPDIM_HINT}") from None
        W = expect_tensor(result, "normalize_rows", (n, m), what="weights", where=where)
        expected = F.normalize(S, p=1, dim=-1)
        if close(W, expected):
            continue
        sums = W.sum(dim=-1)
        hint = ""
        if close(W, F.normalize(S, p=1, dim=0)):
            hint = "your columns sum to 1, not your rows: divide each row by its own sum (sum over dim=-1)."
        elif n == m and close(W, S / S.sum(dim=-1)):
            hint = "S.sum(dim=-1) has shape (n,), so dividing by it divides the columns; keep the dimension with keepdim=True."
        elif close(W, torch.softmax(S, dim=-1)):
            hint = "you applied a softmax (exponentials); these scores are already non-negative, so divide each row by its sum."
        elif close(W, S / S.sum()):
            hint = "you divided by the sum of the whole matrix; divide each row by the sum of that row."
        if hint:
            fail(f"your `normalize_rows` is wrong for {where}: {hint}")
        for i in range(n):
            if abs(float(sums[i]) - 1) > 1e-5:
                fail(f"row {i} of your weights sums to {float(sums[i]):.4g} for {where}, not 1.")
        expect_close(
            W,
            expected,
            "normalize_rows",
            what="weights",
            where=where,
            hint="each row must keep its proportions: W[i, j] = S[i, j] / (sum over k of S[i, k]).",
        )
    passed("normalize_rows", f"rows sum to 1 and keep their proportions on {len(shapes)} shapes")


def check_causal_average_weights(causal_average_weights) -> None:
    """`causal_average_weights(n) -> (n, n)`: row i averages positions 0..i (a running mean, `torch.cumsum`)."""
    __tracebackhide__ = True
    require_function(causal_average_weights, "causal_average_weights")
    check_earlier_first(
        causal_average_weights, "causal_average_weights", "normalize_rows", check_normalize_rows, "exercise 1"
    )
    rng = generator(4)
    sizes = (1, 2, 4, 7)
    for n in sizes:
        inputs = {"n": n}
        where = describe(inputs)
        W = expect_tensor(
            call(causal_average_weights, "causal_average_weights", inputs),
            "causal_average_weights",
            (n, n),
            what="weights",
            where=where,
        )
        future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1) & (W.abs() > 1e-8)
        if future.any():
            i, j = (int(k) for k in future.nonzero()[0])
            fail(
                f"row {i} of your weights gives weight {float(W[i, j]):.3g} to position {j}, which comes after it ({where}): "
                f"row i may only average positions 0..i, so everything above the diagonal must be 0."
            )
        diagonal = W.diagonal()
        if (diagonal.abs() < 1e-8).any():
            i = int((diagonal.abs() < 1e-8).nonzero()[0])
            fail(f"W[{i}, {i}] is 0 in your weights ({where}): position i averages positions 0..i, itself included.")
        sums = W.sum(dim=-1)
        for i in range(n):
            if abs(float(sums[i]) - 1) > 1e-5:
                hint = f"row {i} averages {i + 1} positions, so each of its weights is 1/{i + 1}."
                if abs(float(sums[i]) - (i + 1)) < 1e-4:
                    hint = f"divide row i by i + 1, the number of positions it averages ({hint})"
                elif n > 1 and abs(float(sums[i]) - (i + 1) / n) < 1e-5:
                    hint = f"you divided every row by n = {n}; row i averages i + 1 positions, so divide it by i + 1."
                fail(f"row {i} of your weights sums to {float(sums[i]):.4g} ({where}), not 1: {hint}")
        X = torch.randn(n, 3, generator=rng, dtype=W.dtype)
        running_mean = torch.cumsum(X, dim=0) / torch.arange(1, n + 1, dtype=W.dtype)[:, None]
        expect_close(
            W @ X,
            running_mean,
            "causal_average_weights",
            what="running average W @ X",
            where=where,
            hint="row i should give the same weight, 1/(i + 1), to each of the positions 0..i.",
        )
    passed(
        "causal_average_weights",
        f"lower-triangular, rows sum to 1, W @ X is the running mean (n = {', '.join(map(str, sizes))})",
    )
