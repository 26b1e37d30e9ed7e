"""Checks for lesson 11, what heads learn: `previous_token_scores` and `induction_scores`.

Both read a stack of attention maps `(..., h, T, T)` and return one number per head. The
reference is `torch.diagonal` with an offset, over the last two axes; the weights are random
causal softmax maps, and planted maps (a head that does exactly the job) must score 1.
"""

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

# (batch dims, heads, T): T never equals h or a batch size, so a wrong axis shows in the shape.
CASES = (((), 3, 8), ((2,), 4, 10), ((2, 3), 2, 12), ((5,), 1, 7))


def causal_weights(shape: tuple, T: int, rng: torch.Generator, spread: float = 2.0) -> torch.Tensor:
    """Random causal attention maps `(*shape, T, T)`: a softmax over keys j ≤ i of random scores."""
    scores = spread * torch.randn(*shape, T, T, generator=rng, dtype=torch.float64)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T): True where j > i
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1).float()


def _diagonal(weights: torch.Tensor, back: int) -> torch.Tensor:
    """`weights[..., i, i − back]` for every i ≥ back: `(..., T − back)` (back < 0: the future)."""
    return weights.double().diagonal(offset=-back, dim1=-2, dim2=-1)


def _shape(value, name: str, batch: tuple, h: int, where: str, positions: str, picked: torch.Tensor) -> torch.Tensor:
    """One score per head, every batch dim kept: `(*batch, h)`, or a message naming what went wrong.

    `picked (*batch, h, K)` holds the weights the score averages, position by position.
    """
    __tracebackhide__ = True
    expected = (*batch, h)
    if isinstance(value, torch.Tensor) and tuple(value.shape) != expected:
        shape = tuple(value.shape)
        if value.dim() == len(expected) + 1 and shape[:-1] == expected:
            fail(
                f"your `{name}` returned shape {shape} for {where}: one score per position ({shape[-1]} of them) "
                f"for each head. A head's score is one number: the mean over {positions}, so the result has "
                f"shape {expected}."
            )
        if value.dim() == len(expected) and close(value, picked.mean(dim=-2)):
            fail(
                f"your `{name}` returned shape {shape} for {where}: you averaged over the heads (the axis of "
                f"size {h}, just before the two T's) and kept the positions. Average over the positions "
                f"instead, so each head keeps its own score: shape {expected}."
            )
        if batch and shape == (h,):
            fail(
                f"your `{name}` returned shape {shape} for {where}: you averaged over the batch as well. Keep "
                f"every dimension before the two T's and average over positions only: shape {expected}."
            )
        if shape == ():
            fail(
                f"your `{name}` returned a single number for {where}: you averaged over everything. "
                f"Average over positions only, one score per head: shape {expected}."
            )
        fail(
            f"your `{name}` returned shape {shape} for {where}; expected {expected}, one score per head with "
            "every batch dimension kept. Note that `torch.diagonal` takes the diagonal of the first two "
            "dimensions unless you pass `dim1=-2, dim2=-1`."
        )
    return expect_tensor(value, name, expected, what="scores", where=where)


def _planted(name: str, scores: torch.Tensor, where: str, job: str) -> None:
    """Heads that do the job exactly score 1."""
    __tracebackhide__ = True
    if not close(scores, torch.ones_like(scores)):
        fail(
            f"a head that puts all its weight on {job} should score 1, but your `{name}` gives "
            f"{[round(float(v), 4) for v in scores.flatten()[:4]]} for {where}."
        )


def check_previous_token_scores(previous_token_scores) -> None:
    """`previous_token_scores(weights (..., h, T, T))` -> `(..., h)`: each head's mean weight from
    position i to i − 1, over i ≥ 1."""
    __tracebackhide__ = True
    name = "previous_token_scores"
    require_function(previous_token_scores, name)
    rng = generator(110)
    positions = "the positions i = 1 … T − 1 (position 0 has no previous token)"
    for batch, h, T in CASES:
        weights = causal_weights((*batch, h), T, rng)
        inputs = {"weights": weights}
        where = describe(inputs)
        back = _diagonal(weights, 1)  # (..., h, T - 1): w[i, i - 1] for i = 1 .. T - 1
        out = _shape(call(previous_token_scores, name, inputs), name, batch, h, where, positions, back)
        expected = back.mean(dim=-1)
        if close(out, expected):
            continue
        hints = {
            "the future": (
                _diagonal(weights, -1).mean(dim=-1),
                "you took the weight from i to i + 1, the next token, which a causal map never sees (so it is "
                "0). The previous token is below the main diagonal: `offset=-1`, row i, column i − 1.",
            ),
            "itself": (
                _diagonal(weights, 0).mean(dim=-1),
                "you took the weight each position gives itself (the main diagonal). The previous token is "
                "one below it: row i, column i − 1 (`offset=-1`).",
            ),
            "itself from 1": (
                _diagonal(weights, 0)[..., 1:].mean(dim=-1),
                "you took the weight each position gives itself (the main diagonal). The previous token is "
                "one below it: row i, column i − 1 (`offset=-1`).",
            ),
            "divided by T": (
                back.sum(dim=-1) / T,
                f"you divided by T = {T}, counting position 0, which has no previous token. Average over "
                f"the T − 1 = {T - 1} positions i = 1 … T − 1 only.",
            ),
            "row 0 clamped": (
                (back.sum(dim=-1) + weights.double()[..., 0, 0]) / T,
                "you counted position 0 (its 'previous token' became position 0 itself). Position 0 has no "
                "previous token: average over i = 1 … T − 1 only.",
            ),
            "summed": (
                back.sum(dim=-1),
                f"you summed the weights w[i, i − 1]; take their mean over the {T - 1} positions i ≥ 1.",
            ),
        }
        for reference, hint in hints.values():
            if close(out, reference):
                fail(f"your `{name}` is wrong for {where}: {hint}")
        expect_close(
            out,
            expected,
            name,
            what="scores",
            where=where,
            hint="the score of a head is the mean of its weights w[i, i − 1] over i = 1 … T − 1 "
            "(`torch.diagonal(weights, offset=-1, dim1=-2, dim2=-1)`).",
        )
    T = 9
    planted = torch.eye(T).roll(-1, dims=-1).tril()  # (T, T): row i has a 1 at column i − 1 (row 0: nothing)
    planted[0, 0] = 1.0  # position 0 can only look at itself
    weights = planted.expand(2, 3, T, T).clone()  # (B, h, T, T)
    inputs = {"weights": weights}
    where = describe(inputs)
    out = _shape(call(previous_token_scores, name, inputs), name, (2,), 3, where, positions, _diagonal(weights, 1))
    _planted(name, out, where, "the previous token")
    passed(name, f"the mean of w[i, i − 1] over i ≥ 1, per head, for {len(CASES)} shapes of causal maps")


def check_induction_scores(induction_scores) -> None:
    """`induction_scores(weights (..., h, T, T), period)` -> `(..., h)`: each head's mean weight from
    position i to i − period + 1, over i ≥ period."""
    __tracebackhide__ = True
    name = "induction_scores"
    require_function(induction_scores, name)
    rng = generator(111)
    for (batch, h, T), period in zip(CASES, (3, 4, 5, 2)):
        weights = causal_weights((*batch, h), T, rng)
        inputs = {"weights": weights, "period": period}
        where = describe(inputs)
        positions = f"the positions i ≥ period (the {T - period} positions of the repeat)"
        after = _diagonal(weights, period - 1)  # (..., h, T - period + 1): w[i, i - period + 1], i ≥ period - 1
        out = _shape(call(induction_scores, name, inputs), name, batch, h, where, positions, after[..., 1:])
        expected = after[..., 1:].mean(dim=-1)  # i ≥ period
        if close(out, expected):
            continue
        same_token = _diagonal(weights, period)  # (..., h, T - period): w[i, i - period], i ≥ period
        hints = [
            (
                same_token.mean(dim=-1),
                f"you measured the weight from i to i − period, the same token last time. An induction head "
                f"looks one further: at i − period + 1, the token that came after it (for period = {period}, "
                f"from i to i − {period - 1}).",
            ),
            (
                after.mean(dim=-1),
                f"you also averaged over i = period − 1 = {period - 1}, which is still in the first pass: its "
                f"token has not appeared before, so it has no induction target. Average over i ≥ period only.",
            ),
            (
                after[..., 1:].sum(dim=-1) / T,
                f"you divided by T = {T}; only the T − period = {T - period} positions i ≥ period are in the "
                "repeat. The first pass has nothing earlier to copy from: leave it out of the mean.",
            ),
            (
                after.sum(dim=-1) / T,
                f"you divided by T = {T}; only the T − period = {T - period} positions i ≥ period are in the "
                "repeat. The first pass has nothing earlier to copy from: leave it out of the mean.",
            ),
            (
                after[..., 1:].sum(dim=-1),
                f"you summed the weights w[i, i − period + 1]; take their mean over the {T - period} positions "
                "i ≥ period.",
            ),
            (
                (after[..., 1:].sum(dim=-1) + weights.double()[..., :period, 0].sum(dim=-1)) / T,
                f"you counted the positions before the repeat, i < period = {period}, sending their weight to "
                "position 0. They have no earlier copy to find: average over the T − period = "
                f"{T - period} positions i ≥ period only.",
            ),
            (
                _diagonal(weights, -(period - 1))[..., : T - period].mean(dim=-1),
                "you took the weight from i to i + period − 1, in the future, which a causal map never sees "
                "(so it is 0). The earlier occurrence is behind: column i − period + 1, `offset=-(period - 1)`.",
            ),
        ]
        for reference, hint in hints:
            if close(out, reference):
                fail(f"your `{name}` is wrong for {where}: {hint}")
        for other in range(1, T):
            if other == period or not close(out, _diagonal(weights, other - 1)[..., 1:].mean(dim=-1)):
                continue
            again = call(induction_scores, name, {"weights": weights, "period": period + 1})
            if isinstance(again, torch.Tensor) and again.shape == out.shape and close(again, out):
                fail(
                    f"your `{name}` gives the same scores for period = {period} and period = {period + 1} "
                    f"({where}): use the `period` you are given, not a fixed number."
                )
            if other == period + 1:
                fail(
                    f"your `{name}` is wrong for {where}: you measured the weight from i to i − period, the same "
                    "token last time. An induction head looks one further: at i − period + 1, the token that "
                    "came after it."
                )
            if other == period - 1:
                fail(
                    f"your `{name}` is wrong for {where}: you measured the weight from i to i − period + 2, one "
                    "position past the token that came after the same token last time. An induction head looks "
                    f"at i − period + 1 (for period = {period}, from i to i − {period - 1})."
                )
            fail(
                f"your `{name}` gives for period = {period} the scores of period = {other} ({where}): "
                "use the `period` you are given, not a fixed number."
            )
        expect_close(
            out,
            expected,
            name,
            what="scores",
            where=where,
            hint="the score of a head is the mean of its weights w[i, i − period + 1] over i = period … T − 1 "
            "(`torch.diagonal(weights, offset=-(period - 1), dim1=-2, dim2=-1)`, without its first entry).",
        )
    T, period = 11, 4
    planted = torch.zeros(T, T)
    for i in range(T):
        planted[i, i - period + 1 if i >= period else 0] = 1.0  # (T, T): the repeat looks one past the last time
    weights = planted.expand(3, 2, T, T).clone()  # (B, h, T, T)
    inputs = {"weights": weights, "period": period}
    where = describe(inputs)
    picked = _diagonal(weights, period - 1)[..., 1:]
    out = _shape(call(induction_scores, name, inputs), name, (3,), 2, where, "the positions i ≥ period", picked)
    _planted(name, out, where, "the token after the previous occurrence")
    passed(
        name,
        f"the mean of w[i, i − period + 1] over i ≥ period, per head, for {len(CASES)} shapes and periods",
    )
