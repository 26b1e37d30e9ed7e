"""Checks for lesson 14, training through the kernel: `attention_backward` (the tiled backward pass
in PyTorch), `FlashAttention` (a `torch.autograd.Function`) and `triton_attention_backward` (the
backward pass as Triton kernels).

The reference is autograd through `F.scaled_dot_product_attention` in float64. Lesson 13's guard
(`FullMatrixWatch`) watches every tensor the learner's operators create and catches the whole n × m
matrix; `SavedForBackward` counts what autograd keeps for the backward pass. A wrong gradient is
compared with what each classic mistake gives, worked out here in closed form from the whole weight
matrix (the check may hold it; the learner's code may not), so that the message names the mistake.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from utils.checks._harness import (
    CheckError,
    _time_limit,
    _TimeUp,
    _your_line,
    call,
    check_earlier_first,
    close,
    describe,
    earlier_exercise,
    expect_close,
    expect_tensor,
    fail,
    generator,
    passed,
    require_function,
    shape_of,
)
from utils.checks.lesson13 import FullMatrixWatch, FusedWatch, triton_can_check

NAME = "attention_backward"
FLASH = "FlashAttention"
TRITON = "triton_attention_backward"
TIME_LIMIT = 20.0  # seconds one call of the learner's code may take (tests shorten it)
TRITON_BLOCKS = (16, 32, 64, 128)  # the block sizes a Triton kernel may use (tl.dot needs at least 16)


# ---------------------------------------------------------------------------------------------
# The reference, and the gradients each classic mistake gives


def _allowed(n: int, m: int) -> torch.Tensor:
    """(n, m) bool: query i may see key j when j <= i (causal, aligned top-left like SDPA's `is_causal`)."""
    return torch.arange(m)[None, :] <= torch.arange(n)[:, None]


def _scores64(Q, K, scaled: bool = True) -> torch.Tensor:
    """Q Kᵀ / √d in float64 on the CPU, (..., n, m); unscaled if asked."""
    product = torch.einsum("...ic,...jc->...ij", Q.double().cpu(), K.double().cpu())
    return product / math.sqrt(Q.shape[-1]) if scaled else product


def _hide(values: torch.Tensor, causal: bool, fill: float) -> torch.Tensor:
    if not causal:
        return values
    return values.masked_fill(~_allowed(*values.shape[-2:]), fill)


class Problem:
    """One set of inputs for a backward pass, with everything the check knows about them, in float64."""

    def __init__(self, rng, batch: tuple, n: int, m: int, d: int, d_v: int, causal: bool, spread: float = 1.0):
        self.causal, self.n, self.m, self.d = causal, n, m, d
        self.Q = spread * torch.randn(*batch, n, d, generator=rng, dtype=torch.float64)
        self.K = spread * torch.randn(*batch, m, d, generator=rng, dtype=torch.float64)
        self.V = torch.randn(*batch, m, d_v, generator=rng, dtype=torch.float64)
        self.dO = torch.randn(*batch, n, d_v, generator=rng, dtype=torch.float64)
        leaves = [x.clone().requires_grad_() for x in (self.Q, self.K, self.V)]
        out = F.scaled_dot_product_attention(*leaves, is_causal=causal)
        self.expected = torch.autograd.grad(out, leaves, self.dO)  # (dQ, dK, dV) by autograd: the reference
        self.O = out.detach()
        self.S = _hide(_scores64(self.Q, self.K), causal, float("-inf"))  # (..., n, m)
        self.lse = torch.logsumexp(self.S, dim=-1)  # (..., n): each row's log-sum-exp L
        self.P = torch.exp(self.S - self.lse[..., None])  # (..., n, m): the weights
        self.dP = torch.einsum("...ic,...jc->...ij", self.dO, self.V)  # (..., n, m): dO Vᵀ
        self.D = (self.dO * self.O).sum(dim=-1)  # (..., n)

    def inputs(self, dtype=torch.float64, device="cpu") -> dict:
        values = {"Q": self.Q, "K": self.K, "V": self.V, "O": self.O, "dO": self.dO}
        inputs = {key: value.to(device, dtype).clone() for key, value in values.items()}
        inputs["lse"] = self.lse.to(device, torch.float32 if dtype != torch.float64 else dtype).clone()
        return inputs

    def gradients(self, P=None, D=None, dV=None, dq=1.0, dk=1.0, dv=1.0) -> tuple:
        """(dQ, dK, dV) in closed form from the weights P a backward pass used and its D (per row, or one per
        entry of P); `dq`, `dk`, `dv` multiply the results (a scale forgotten, or applied twice)."""
        P = self.P if P is None else P
        D = self.D if D is None else D
        dS = P * (self.dP - (D if D.dim() == P.dim() else D[..., None]))  # (..., n, m)
        scale = 1 / math.sqrt(self.d)
        grad_q = torch.einsum("...ij,...jc->...ic", dS, self.K) * scale * dq
        grad_k = torch.einsum("...ij,...ic->...jc", dS, self.Q) * scale * dk
        grad_v = torch.einsum("...ij,...ic->...jc", P, self.dO) * dv if dV is None else dV
        return grad_q, grad_k, grad_v

    def tile_starts(self, length: int, block: int) -> torch.Tensor:
        return torch.arange(length) // block * block

    def key_block_softmax(self, block: int) -> torch.Tensor:
        """The weights when each block of keys is normalised on its own (a softmax of the block)."""
        P = torch.zeros_like(self.P)
        for first in range(0, self.m, block):
            part = self.S[..., first : first + block]
            P[..., first : first + block] = torch.softmax(part, dim=-1).nan_to_num(0.0)
        return P

    def per_key_block(self, values: torch.Tensor, block: int) -> torch.Tensor:
        """(..., n, m): entry (i, j) is the sum of `values` over row i's entries in key j's block."""
        sums = torch.zeros_like(values)
        for first in range(0, self.m, block):
            sums[..., first : first + block] = values[..., first : first + block].sum(dim=-1, keepdim=True)
        return sums

    def along_keys(self, per_row: torch.Tensor, block: int) -> torch.Tensor | None:
        """(..., n, m): entry (i, j) is `per_row` at the row (start of i's block) + (j's place in its block):
        a (..., b) slice of a per-row quantity broadcast over the keys instead of the queries."""
        index = self.tile_starts(self.n, block)[:, None] + (torch.arange(self.m) % block)[None, :]  # (n, m)
        if int(index.max()) >= self.n or self.n % block or self.m % block:
            return None
        return per_row[..., index]

    def key_rows(self, block: int) -> torch.Tensor | None:
        """(..., n, m): entry (i, j) is the lse of the row (start of j's block) + (i's place in its block): the
        query block's slice taken at the key block's positions."""
        index = self.tile_starts(self.m, block)[None, :] + (torch.arange(self.n) % block)[:, None]  # (n, m)
        if int(index.max()) >= self.n or self.n % block or self.m % block:
            return None
        return self.lse[..., index]

    def untransposed_dV(self, block: int) -> torch.Tensor | None:
        """dV when each tile multiplies its weights P (b × b) by dO without transposing them."""
        if self.n % block or self.m % block:
            return None
        dV = torch.zeros_like(self.V)
        for first in range(0, self.m, block):
            for row in range(0, self.n, block):
                tile = self.P[..., row : row + block, first : first + block]  # (..., b, b)
                dV[..., first : first + block, :] += tile @ self.dO[..., row : row + block, :]
        return dV

    def below_diagonal_tiles(self, block: int) -> torch.Tensor:
        """(n, m) bool: the tiles a causal loop visits (query block at or after the key block)."""
        return self.tile_starts(self.n, block)[:, None] >= self.tile_starts(self.m, block)[None, :]


def _suspects(problem: Problem, blocks: tuple) -> list:
    """(gradients, message) for each classic mistake: the first whose gradients the learner's match is named."""
    p, d = problem, problem.d
    row_d = "D_i = rowsum(dO_i ∘ O_i), the product of the output's gradient and the output, summed over the row"
    unscaled = _hide(_scores64(p.Q, p.K, scaled=False), p.causal, float("-inf"))
    found = [
        (
            p.gradients(D=p.dO.sum(dim=-1)),
            f"your D is the row sums of dO alone; it is {row_d}. It stands for Σ_j P_ij dP_ij, which is dO_i · O_i.",
        ),
        (
            p.gradients(D=torch.zeros_like(p.D)),
            "your dS is P ∘ dP, without the − D term. The softmax's Jacobian is diag(p) − p pᵀ: its second part "
            f"gives dS = P ∘ (dP − D), with {row_d}.",
        ),
        (
            p.gradients(P=torch.exp(p.S)),
            "your weights are exp(S), not exp(S − lse): subtract each row's log-sum-exp, which the forward pass "
            "saved, P = exp(S − lse[..., None]); it is what makes each row of P sum to 1.",
        ),
        (
            p.gradients(P=torch.exp(unscaled - p.lse[..., None])),
            f"you recomputed the scores without the scale: S = Q Kᵀ / √d (d = {d}), as in the forward pass, "
            "before P = exp(S − lse).",
        ),
        (
            p.gradients(dq=math.sqrt(d)),
            f"your dQ is √d = {math.sqrt(d):.4g} times too large: you forgot the 1/√d on dQ. S = Q Kᵀ / √d, so "
            "dQ = dS K / √d.",
        ),
        (
            p.gradients(dk=math.sqrt(d)),
            f"your dK is √d = {math.sqrt(d):.4g} times too large: you forgot the 1/√d on dK. S = Q Kᵀ / √d, so "
            "dK = dSᵀ Q / √d.",
        ),
        (
            p.gradients(dq=math.sqrt(d), dk=math.sqrt(d)),
            f"your dQ and dK are √d = {math.sqrt(d):.4g} times too large: you forgot the 1/√d on both. "
            "S = Q Kᵀ / √d, so dQ = dS K / √d and dK = dSᵀ Q / √d.",
        ),
        (
            p.gradients(dq=1 / math.sqrt(d), dk=1 / math.sqrt(d)),
            "your dQ and dK are √d times too small: the 1/√d is applied twice (once to the scores you recompute "
            "is right; dQ = dS K / √d and dK = dSᵀ Q / √d take it once more, not twice).",
        ),
        (
            p.gradients(dv=1 / math.sqrt(d)),
            "your dV is divided by √d: dV = Pᵀ dO has no scale, since V does not pass through the scores.",
        ),
    ]
    if p.causal:
        unmasked = torch.exp(_scores64(p.Q, p.K) - p.lse[..., None])  # (..., n, m): the weights with no mask
        found.append(
            (
                p.gradients(P=unmasked),
                "with causal=True your backward pass does not apply the mask: the weights of the keys j > i must "
                "be 0. Set those scores to −inf before the exp, as the forward pass did (the lse the forward pass "
                "saved does not hide them for you).",
            )
        )
        for block in blocks:
            tiles = p.below_diagonal_tiles(block)
            found.append(
                (
                    p.gradients(P=unmasked * tiles),
                    "with causal=True your backward pass skips the blocks above the diagonal but does not mask "
                    "inside the blocks on it: there, the weights of the keys j > i must be 0 too (set their "
                    "scores to −inf before the exp).",
                )
            )
    for block in blocks:
        found.append(
            (
                p.gradients(D=p.per_key_block(p.P * p.dP, block)),
                f"you computed D from the weights of one block of keys at a time (blocks of {block}): rowsum(P ∘ dP) "
                "equals D only summed over the whole row, every block of keys. Compute D = rowsum(dO ∘ O) once, "
                "before the loops: it needs no weights at all.",
            )
        )
        found.append(
            (
                p.gradients(P=p.key_block_softmax(block)),
                f"in your backward pass each block of {block} keys has weights that sum to 1 by themselves: you "
                "normalised a block by its own log-sum-exp (a softmax of the block). Use the row's lse, passed in, "
                "which the forward pass computed over all the keys: P = exp(S − lse).",
            )
        )
        wrong_rows = p.key_rows(block)
        if wrong_rows is not None:
            found.append(
                (
                    p.gradients(P=torch.exp(p.S - wrong_rows)),
                    f"you took the lse of the wrong block: the rows at the key block's positions (lse[first : first "
                    f"+ {block}]) where the query block's are needed (lse[row : row + {block}]).",
                )
            )
        across = p.along_keys(p.lse, block)
        if across is not None:
            found.append(
                (
                    p.gradients(P=torch.exp(p.S - across)),
                    "you subtracted lse along the wrong axis: a block of it, shape (..., b), broadcasts over the keys "
                    "(the last axis). Give it a last axis of 1, `lse[..., row : row + b, None]`, so that row i's lse "
                    "is taken from row i's scores.",
                )
            )
        across = p.along_keys(p.D, block)
        if across is not None:
            found.append(
                (
                    p.gradients(D=across),
                    "you subtracted D along the wrong axis: a block of it, shape (..., b), broadcasts over the keys "
                    "(the last axis). Give it a last axis of 1, `D[..., row : row + b, None]`.",
                )
            )
        untransposed = p.untransposed_dV(block)
        if untransposed is not None:
            found.append(
                (
                    p.gradients(dV=untransposed),
                    "your dV multiplies each block of weights P by dO without transposing it: dV = Pᵀ dO (key j "
                    "collects Σ_i P_ij dO_i). With square blocks the shapes fit, but the numbers land on the wrong keys.",
                )
            )
    return found


def _unpack(result, name: str, problem_inputs: dict, where: str, what: str = "gradients") -> tuple:
    """The learner's (dQ, dK, dV), each a tensor of the right shape (NaN allowed: the caller says what it means)."""
    __tracebackhide__ = True
    Q, K, V = problem_inputs["Q"], problem_inputs["K"], problem_inputs["V"]
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        fail(
            f"your `{name}` returned {shape_of(result)} for {where}; it should return the three {what} "
            "(dQ, dK, dV), one for each of Q, K and V, in that order."
        )
    shapes = [tuple(x.shape) for x in (Q, K, V)]
    got = [tuple(x.shape) if isinstance(x, torch.Tensor) else None for x in result]
    if got[1:] == shapes[:0:-1] and shapes[1] != shapes[2]:
        fail(
            f"your `{name}` returned (dQ, dV, dK) for {where}: shapes {got[1]} and {got[2]}. Return the gradients "
            "in the order of the inputs, (dQ, dK, dV)."
        )
    names = ("dQ", "dK", "dV")
    return tuple(
        expect_tensor(x, name, shape, what=label, where=where, allow_nan=True)
        for x, shape, label in zip(result, shapes, names)
    )


def _no_nan(grads: tuple, name: str, where: str, hint: str) -> None:
    __tracebackhide__ = True
    for label, grad in zip(("dQ", "dK", "dV"), grads):
        bad = ~torch.isfinite(grad.detach())
        if bad.any():
            index = tuple(int(i) for i in bad.nonzero()[0])
            kind = "NaN" if torch.isnan(grad.detach()[index]) else "infinity"
            fail(f"your `{name}`'s {label} holds {kind} at {index} for {where}: {hint}")


def _matches(grads: tuple, expected: tuple, tolerance: dict) -> bool:
    return all(close(grad, right, **tolerance) for grad, right in zip(grads, expected))


def _diagnose(grads: tuple, problem: Problem, name: str, where: str, blocks: tuple, tolerance: dict, hint: str) -> None:
    """Nothing if the learner's gradients are right; else the first classic mistake they match, or the first wrong
    gradient with a hint that says what it depends on."""
    __tracebackhide__ = True
    if _matches(grads, problem.expected, tolerance):
        return
    for suspect, message in _suspects(problem, blocks):
        if _matches(grads, suspect, tolerance):
            fail(f"your `{name}` is wrong for {where}: {message}")
    if tolerance is TIGHT and _matches(grads, problem.expected, {"atol": 1e-4, "rtol": 1e-4}):
        error = max(float((grad.double().cpu() - right).abs().max()) for grad, right in zip(grads, problem.expected))
        fail(f"for float64 inputs your `{name}` is off by {error:.1e}, float32's precision ({where}): {LIKE_INPUTS}")
    right = [close(grad, expected, **tolerance) for grad, expected in zip(grads, problem.expected)]
    causal = " and, causal, −inf above the diagonal" if problem.causal else ""
    if right[2]:
        advice = (
            "your dV is right, so are the weights P you recompute; look at what comes after them: dP = dO Vᵀ, "
            "D = rowsum(dO ∘ O), dS = P ∘ (dP − D), dQ = dS K / √d and dK = dSᵀ Q / √d"
        )
    elif right[0] and right[1]:
        advice = "dQ and dK are right, dV is not: dV = Pᵀ dO, summed over every block of queries"
    else:
        advice = f"your dV is wrong too, so look first at the weights you recompute: P = exp(S − lse) with S = Q Kᵀ / √d{causal}"
    label = ("dQ", "dK", "dV")[right.index(False)]
    expect_close(
        grads[right.index(False)].double().cpu(),
        problem.expected[right.index(False)],
        name,
        what=label,
        where=where,
        hint=f"{advice}. {hint}".strip(),
        **tolerance,
    )


# ---------------------------------------------------------------------------------------------
# attention_backward: the tiled backward pass in PyTorch

TIGHT = {"atol": 1e-8, "rtol": 1e-7}  # float64 inputs: mistakes are told apart far above this
LIKE_INPUTS = (
    "create your gradients and running sums with the inputs' dtype and device (`torch.zeros_like(Q)`, or "
    "`dtype=Q.dtype, device=Q.device`): `torch.zeros` makes float32 on the CPU unless told otherwise."
)


def _run(attention_backward, problem: Problem, block_size: int, dtype=torch.float64):
    __tracebackhide__ = True
    inputs = problem.inputs(dtype)
    where = describe({**inputs, "block_size": block_size, "causal": problem.causal})
    result = call(
        attention_backward, NAME, {**inputs, "block_size": block_size}, causal=problem.causal, time_limit=TIME_LIMIT
    )
    grads = _unpack(result, NAME, inputs, where)
    for label, grad in zip(("dQ", "dK", "dV"), grads):
        if grad.dtype != dtype:
            fail(f"your `{NAME}` returned {label} as {grad.dtype} for {dtype} inputs ({where}): {LIKE_INPUTS}")
    return grads, where


def _guard(attention_backward, rng) -> list:
    """Stage 2: long sequences, small blocks (square tiles, n ≠ m): no n × m tensor, no fused attention, three
    gradients of the right shapes."""
    __tracebackhide__ = True
    batch, n, m, d, d_v, block_size = (2, 3), 240, 200, 8, 12, 40
    results = []
    for causal in (False, True):
        problem = Problem(rng, batch, n, m, d, d_v, causal)
        watch, fused = FullMatrixWatch(n, m, math.prod(batch), rows=max(d, d_v)), FusedWatch()
        with fused, watch:
            grads, where = _run(attention_backward, problem, block_size)
        if fused.fused or watch.fused:
            fail(
                f"your `{NAME}` calls PyTorch's own attention (`{fused.fused or watch.fused}`) for {where}: the exercise "
                "is the backward pass itself, block by block, from the saved log-sum-exp."
            )
        if watch.full:
            fail(
                f"your `{NAME}` built a tensor of shape {watch.full} for {where}: that holds a whole n × m matrix "
                f"(n = {n} queries × m = {m} keys), the weights the backward pass must not keep. Recompute them one "
                "tile at a time: a block of queries against a block of keys, P = exp(S − lse) of shape "
                "(..., block_size, block_size)."
            )
        if watch.untiled:
            fail(
                f"your `{NAME}` built a tensor of shape {watch.untiled} for {where}: that is every one of the "
                f"n = {n} queries against a block of keys at once. Take the queries `block_size` at a time too, so "
                "that a tile of scores has shape (..., block_size, block_size)."
            )
        results.append((problem, block_size, grads, where))
    return results


def _several_blocks(attention_backward, rng) -> None:
    """Stage 1: several square tiles, n ≠ m, both multiples of the block: where each classic mistake is named."""
    __tracebackhide__ = True
    for batch, n, m, block_size in (((2,), 40, 24, 8), ((2,), 24, 40, 8)):
        problem = Problem(rng, batch, n, m, 8, 6, False)
        grads, where = _run(attention_backward, problem, block_size)
        _no_nan(grads, NAME, where, "look at how a tile's weights are recomputed and added to the gradients.")
        hint = (
            f"here there are {n // block_size} × {m // block_size} tiles: each adds its share to dQ of its block of "
            "queries and to dK, dV of its block of keys."
        )
        _diagnose(grads, problem, NAME, where, (block_size,), TIGHT, hint)


def _one_block_and_ragged(attention_backward, rng) -> None:
    """Stage 3: block_size ≥ n and m (a single tile, not square); then last blocks shorter than the others."""
    __tracebackhide__ = True
    problem = Problem(rng, (3,), 6, 10, 8, 5, False)
    grads, where = _run(attention_backward, problem, 16)
    _no_nan(grads, NAME, where, "with block_size = 16 ≥ n and m there is a single tile; does your loop reach it?")
    hint = "with a single tile (block_size ≥ n and m) your function is the dense backward pass of the derivation."
    _diagnose(grads, problem, NAME, where, (16,), TIGHT, hint)
    problem = Problem(rng, (2,), 21, 29, 8, 6, False)
    grads, where = _run(attention_backward, problem, 8)
    _no_nan(grads, NAME, where, "the last blocks are shorter than the others here; look at how you slice them.")
    hint = (
        "n = 21 and m = 29 are not multiples of block_size = 8: the last blocks hold 5 queries and 5 keys. "
        "Slice with `[..., first : first + block_size, :]` (the slice comes out shorter at the end)."
    )
    _diagnose(grads, problem, NAME, where, (8,), TIGHT, hint)


def _causal(attention_backward, rng) -> None:
    """Stage 4: causal=True (query i sees keys j ≤ i, aligned top-left), n = m, n < m, n > m."""
    __tracebackhide__ = True
    for batch, n, m, block_size in (((2,), 24, 24, 8), ((2,), 16, 40, 8), ((2,), 40, 16, 8), ((), 19, 19, 8)):
        problem = Problem(rng, batch, n, m, 8, 6, True)
        grads, where = _run(attention_backward, problem, block_size)
        _no_nan(
            grads,
            NAME,
            where,
            "with causal=True, set the hidden scores to −inf before the exp (exp(−inf − lse) is 0); every query "
            "sees key 0, so each row's lse is finite.",
        )
        hint = (
            "query i sees the keys j ≤ i (aligned top-left, as `is_causal=True`); the keys that no query sees "
            "(j ≥ n when n < m) get no gradient at all."
        )
        _diagnose(grads, problem, NAME, where, (block_size,), TIGHT, hint)


def _precision(attention_backward, rng) -> None:
    """Stage 5: float64 stays float64, to float64's accuracy; scores in the thousands do not overflow."""
    __tracebackhide__ = True
    problem = Problem(rng, (2,), 16, 24, 8, 4, False)
    grads, where = _run(attention_backward, problem, 8)
    hint = LIKE_INPUTS
    for label, grad, expected in zip(("dQ", "dK", "dV"), grads, problem.expected):
        if not close(grad, expected, atol=1e-11, rtol=1e-10):
            error = float((grad - expected).abs().max())
            if error < 1e-4:
                fail(f"for float64 inputs your {label} is off by {error:.1e}, float32's precision ({where}): {hint}")
            expect_close(grad, expected, NAME, what=label, where=where, atol=1e-11, rtol=1e-10)
    for causal in (False, True):
        problem = Problem(rng, (2,), 12, 24, 8, 4, causal, spread=25.0)
        grads, where = _run(attention_backward, problem, 8)
        top = float(problem.S[torch.isfinite(problem.S)].abs().max())
        where += f" (scores up to {top:.0f})"
        _no_nan(
            grads,
            NAME,
            where,
            "exp of a large score overflows. Compute the weights as exp(S − lse) in one go, never exp(S) / exp(lse): "
            "S − lse is at most 0, so its exp is at most 1.",
        )
        _diagnose(grads, problem, NAME, where, (8,), TIGHT, "")


def check_attention_backward(attention_backward) -> None:
    """`attention_backward(Q, K, V, O, dO, lse, block_size, causal=False)` -> (dQ, dK, dV): equal to autograd
    through `F.scaled_dot_product_attention` (float64), causal or not, without ever holding an n × m tensor."""
    __tracebackhide__ = True
    require_function(attention_backward, NAME)
    rng = generator(14)
    _several_blocks(attention_backward, rng)  # first, unwatched: a crash is reported from the learner's own line
    guarded = _guard(attention_backward, rng)
    _one_block_and_ragged(attention_backward, rng)
    _causal(attention_backward, rng)
    _precision(attention_backward, rng)
    for problem, block_size, grads, where in guarded:
        _no_nan(grads, NAME, where, "look at the steps that recompute a tile's weights.")
        _diagnose(grads, problem, NAME, where, (block_size,), TIGHT, "")
    passed(
        NAME,
        "equal to autograd through F.scaled_dot_product_attention, causal or not, n ≠ m, ragged last blocks, "
        "large scores, float64; never an n × m tensor",
    )


# ---------------------------------------------------------------------------------------------
# FlashAttention: a torch.autograd.Function that saves O and the log-sum-exp


class SavedForBackward(TorchFunctionMode):
    """While active, counts the bytes autograd keeps for the backward pass (through
    `torch.autograd.graph.saved_tensors_hooks`), each storage once, and the shape of the largest tensor kept.
    Its state is plain numbers, so it can watch a call made in another process (the grader's) as well."""

    def __init__(self) -> None:
        super().__init__()
        self.saved_bytes = 0
        self.saved_tensors = 0
        self.largest: tuple | None = None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._seen:
            self._seen.add(storage.data_ptr())
            self.saved_bytes += storage.nbytes()
            self.saved_tensors += 1
            if self.largest is None or tensor.numel() > math.prod(self.largest):
                self.largest = tuple(tensor.shape)
        return tensor

    def __enter__(self):
        self._seen: set[int] = set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._hooks.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _apply_of(FlashAttention):
    """`FlashAttention.apply`, or a message if the class is not a `torch.autograd.Function`."""
    __tracebackhide__ = True
    try:
        apply = FlashAttention.apply
    except AttributeError:
        apply = None
    if not callable(apply):
        fail(
            f"your `{FLASH}` has no `apply`: make it a `torch.autograd.Function` "
            f"(`class {FLASH}(torch.autograd.Function):`) with static methods `forward(ctx, Q, K, V, causal=False)` "
            "and `backward(ctx, dO)`; `FlashAttention.apply(Q, K, V, causal)` runs forward and records backward."
        )
    return apply


def _forward(apply, problem: Problem, dtype=torch.float64, watched: bool = False):
    """The learner's output and its inputs (leaves that require gradients), and a description of the call."""
    __tracebackhide__ = True
    given = problem.inputs(dtype)
    inputs = {key: given[key].requires_grad_() for key in ("Q", "K", "V")}
    where = describe({**inputs, "causal": problem.causal})
    saved = SavedForBackward()
    n, m, batch = problem.n, problem.m, math.prod(problem.Q.shape[:-2])
    watch, fused = FullMatrixWatch(n, m, batch), FusedWatch()
    with contextlib.ExitStack() as watching:
        if watched:  # only once the plain calls went well: a crash is then reported from the learner's own line
            for mode in (saved, fused, watch):
                watching.enter_context(mode)
        out = call(apply, f"{FLASH}.apply", {**inputs, "causal": problem.causal}, time_limit=TIME_LIMIT)
    if isinstance(out, (tuple, list)):
        fail(
            f"your `{FLASH}.apply` returned {shape_of(out)} for {where}; `forward` must return only `out` "
            "(..., n, d_v). Keep the log-sum-exp for the backward pass with `ctx.save_for_backward`."
        )
    out = expect_tensor(out, f"{FLASH}.apply", (*problem.Q.shape[:-1], problem.V.shape[-1]), what="output", where=where)
    if watched and (fused.fused or watch.fused):
        fail(
            f"your `{FLASH}` calls PyTorch's own attention (`{fused.fused or watch.fused}`) for {where}: its forward "
            "pass is the tiled forward pass that returns the log-sum-exp (`tiled_forward`)."
        )
    if watched and watch.full:
        fail(
            f"the forward pass of your `{FLASH}` built a tensor of shape {watch.full} for {where}: a whole n × m "
            "matrix. Call the tiled forward pass (`tiled_forward`), which returns out and the log-sum-exp."
        )
    return out, inputs, where, saved


def _backward(out, inputs: dict, dO: torch.Tensor, where: str) -> tuple:
    """The gradients the learner's backward gives for Q, K, V when the output's gradient is dO."""
    __tracebackhide__ = True
    try:
        with _time_limit(TIME_LIMIT):
            grads = torch.autograd.grad(out, list(inputs.values()), dO.to(out.dtype), allow_unused=True)
    except _TimeUp:
        raise CheckError(
            f"the backward pass of your `{FLASH}` ran for more than {TIME_LIMIT:g} s on {where}."
        ) from None
    except CheckError:
        raise
    except Exception as error:  # the learner's own error, in their terms
        if "incorrect number of gradients" in str(error):
            raise CheckError(
                f"the backward pass of your `{FLASH}` returned the wrong number of gradients for {where}: "
                "`backward` returns one for each input of `forward`, Q, K, V and causal: `return dQ, dK, dV, None` "
                f"(None for `causal`, which has no gradient).\n  PyTorch says: {error}"
            ) from None
        raise CheckError(
            f"the backward pass of your `{FLASH}` raised {type(error).__name__}: {error}\n  when called for "
            f"{where}{_your_line(error)}"
        ) from None
    for label, grad in zip(("dQ", "dK", "dV"), grads):
        if grad is None:
            fail(
                f"the backward pass of your `{FLASH}` returned None as {label} for {where}: return (dQ, dK, dV, None)."
            )
    return grads


def _flash_gradients(apply, problem: Problem, watched: bool = False):
    __tracebackhide__ = True
    out, inputs, where, saved = _forward(apply, problem, watched=watched)
    expect_close(
        out,
        problem.O,
        f"{FLASH}.apply",
        what="output",
        where=where,
        hint="the forward pass is the tiled forward pass of lesson 13: `out, lse = tiled_forward(Q, K, V, block_size, "
        "causal)`, and `forward` returns out.",
    )
    grads = _backward(out, inputs, problem.dO, where)
    return grads, where, saved


def _flash_values(apply, rng) -> None:
    """Gradients equal to autograd through SDPA, causal or not; the causal flag reaches the backward pass."""
    __tracebackhide__ = True
    for causal, (n, m, d_v) in ((False, (12, 12, 8)), (True, (20, 20, 8)), (True, (12, 20, 6))):
        problem = Problem(rng, (2, 2), n, m, 8, d_v, causal)
        grads, where, _ = _flash_gradients(apply, problem)
        if _matches(grads, problem.expected, TIGHT):
            continue
        if causal and _matches(
            grads, problem.gradients(P=torch.exp(_scores64(problem.Q, problem.K) - problem.lse[..., None])), TIGHT
        ):
            fail(
                f"with causal=True the backward pass of your `{FLASH}` leaves out the mask ({where}): `forward` "
                "must keep the flag for it (`ctx.causal = causal`) and `backward` pass it on to "
                "`attention_backward(..., causal=ctx.causal)`."
            )
        expected = problem.expected
        for order, words in (((0, 2, 1), "(dQ, dV, dK)"), ((1, 0, 2), "(dK, dQ, dV)"), ((2, 1, 0), "(dV, dK, dQ)")):
            shuffled = tuple(expected[i] for i in order)
            if all(g.shape == s.shape for g, s in zip(grads, shuffled)) and _matches(grads, shuffled, TIGHT):
                fail(
                    f"the backward pass of your `{FLASH}` returns {words} ({where}): return the gradients in the "
                    "order of `forward`'s inputs, (dQ, dK, dV, None)."
                )
        fail_hint = (
            "`backward(ctx, dO)` receives dO, the gradient of the loss with respect to the output; pass it on, "
            "with the tensors `forward` saved (`Q, K, V, O, lse = ctx.saved_tensors`), to `attention_backward`."
        )
        for label, grad, right in zip(("dQ", "dK", "dV"), grads, expected):
            expect_close(grad, right, f"{FLASH}", what=label, where=where, hint=fail_hint, **TIGHT)


def _flash_memory(apply, rng) -> None:
    """The forward pass keeps O(n) numbers for the backward pass, never the n × m weights."""
    __tracebackhide__ = True
    problem = Problem(rng, (2,), 192, 224, 8, 8, True)
    out, inputs, where, saved = _forward(apply, problem, watched=True)
    allowed = sum(x.numel() * x.element_size() for x in (*inputs.values(), out)) + problem.lse.numel() * 8
    weights = math.prod(problem.S.shape) * 8
    if saved.saved_bytes > max(2 * allowed, weights // 4):
        fail(
            f"the forward pass of your `{FLASH}` keeps {saved.saved_bytes / 2**10:.0f} KiB for the backward pass "
            f"({where}) in {saved.saved_tensors} tensors (the largest of shape {saved.largest}), more than twice "
            f"what Q, K, V, O and the log-sum-exp take ({allowed / 2**10:.0f} KiB). Save only those five, "
            "`ctx.save_for_backward(Q, K, V, O, lse)`: the backward pass recomputes the weights."
        )


def _flash_gradcheck(apply) -> None:
    """`torch.autograd.gradcheck` in float64 on small inputs, causal or not."""
    __tracebackhide__ = True
    rng = generator(41)
    for causal in (False, True):
        Q, K, V = (torch.randn(1, 2, 5, 4, generator=rng, dtype=torch.float64).requires_grad_() for _ in range(3))
        try:
            with _time_limit(TIME_LIMIT):
                ok = torch.autograd.gradcheck(
                    lambda q, k, v, causal=causal: apply(q, k, v, causal), (Q, K, V), raise_exception=False
                )
        except _TimeUp:
            fail(f"torch.autograd.gradcheck of your `{FLASH}` ran for more than {TIME_LIMIT:g} s.")
        if not ok:
            fail(
                f"torch.autograd.gradcheck fails for your `{FLASH}` (float64, causal={causal}): the gradients your "
                "backward pass returns differ from the slopes measured by nudging each input."
            )


def check_flash_attention(FlashAttention) -> None:
    """`FlashAttention.apply(Q, K, V, causal)`: the output and, through `backward` (which calls the learner's
    `attention_backward`), the gradients of autograd through SDPA; keeps O(n) numbers for the backward pass;
    passes `torch.autograd.gradcheck` in float64."""
    __tracebackhide__ = True
    require_function(FlashAttention, FLASH, kind="class")
    apply = _apply_of(FlashAttention)
    rng = generator(15)
    problem = Problem(rng, (2,), 10, 10, 8, 8, False)
    _flash_gradients(apply, problem)  # runs forward and backward once: a stub says so first
    if earlier_exercise(FlashAttention, NAME) is None:
        fail(
            f"the backward pass of your `{FLASH}` does not call your `{NAME}`: `backward(ctx, dO)` takes the tensors "
            f"`forward` saved and returns `{NAME}(Q, K, V, O, dO, lse, block_size, ctx.causal)`, plus None for "
            "`causal`."
        )
    check_earlier_first(FlashAttention, FLASH, NAME, check_attention_backward, "exercise 1")
    _flash_values(apply, rng)
    _flash_memory(apply, rng)
    _flash_gradcheck(apply)
    passed(
        FLASH,
        "forward and backward equal to autograd through F.scaled_dot_product_attention, causal or not; keeps O(n) "
        "numbers for the backward pass, not the weights; torch.autograd.gradcheck passes in float64",
    )


# ---------------------------------------------------------------------------------------------
# triton_attention_backward: the backward pass as Triton kernels


class TorchMathWatch(TorchDispatchMode):
    """Remembers the first matrix product or exponential PyTorch computes while it is active: a Triton
    backward pass computes them in its kernels, never with PyTorch's operators."""

    OPERATORS = ("mm", "bmm", "matmul", "addmm", "baddbmm", "exp", "softmax", "einsum", "dot", "mv")

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name() if hasattr(func, "name") else str(func)
        short = name.split("::")[-1].split(".")[0].lstrip("_")
        if self.first is None and short in self.OPERATORS:
            self.first = name
        return func(*args, **(kwargs or {}))


class _TritonSetting:
    """Where the check runs the learner's kernels: a CUDA GPU (half precision), else Triton's interpreter."""

    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.dtype = torch.float16 if self.cuda else torch.float32
        self.tolerance = {"atol": 3e-2, "rtol": 3e-2} if self.cuda else {"atol": 1e-4, "rtol": 1e-4}


def _triton_run(triton_attention_backward, setting: _TritonSetting, problem: Problem):
    __tracebackhide__ = True
    inputs = problem.inputs(setting.dtype, setting.device)
    where = describe({**inputs, "causal": problem.causal})
    fused, math_watch = FusedWatch(), TorchMathWatch()
    with fused, math_watch:
        result = call(triton_attention_backward, TRITON, inputs, causal=problem.causal, time_limit=TIME_LIMIT)
    if fused.fused:
        fail(
            f"your `{TRITON}` calls PyTorch's own attention (`{fused.fused}`) for {where}: the exercise is to launch "
            "your own `@triton.jit` kernels."
        )
    if math_watch.first:
        fail(
            f"your `{TRITON}` computes with PyTorch's operators (`{math_watch.first}`) for {where}: the products and "
            "exponentials belong in your `@triton.jit` kernels (PyTorch may only allocate the outputs)."
        )
    grads = _unpack(result, TRITON, inputs, where)
    for label, grad in zip(("dQ", "dK", "dV"), grads):
        if grad.device != inputs["Q"].device:
            fail(f"your `{TRITON}` returned {label} on {grad.device} for inputs on {inputs['Q'].device} ({where}).")
    _no_nan(
        grads,
        TRITON,
        where,
        "look at the positions your masks leave out (rows and keys past n, and for causal the keys after each "
        "query): their scores must be −inf before the exp, so that their weights are 0.",
    )
    return grads, where


def check_triton_attention_backward(triton_attention_backward) -> None:
    """`triton_attention_backward(Q, K, V, O, dO, lse, causal=False)` for `(B, h, n, d)` inputs: the gradients of
    autograd through SDPA, on a CUDA GPU (float16) or in Triton's interpreter (float32), causal or not, n not a
    multiple of the block, d from 16 to 128."""
    __tracebackhide__ = True
    if not triton_can_check(triton_attention_backward, TRITON, "kernels"):
        return
    setting = _TritonSetting()
    rng = generator(16)
    stages = (
        ((1, 2), 16, 16, False, "n = 16 fits in one block: with one tile this is the dense backward pass."),
        ((1, 2), 64, 32, False, "right with one block, wrong with several: each tile adds its share."),
        (
            (1, 2),
            40,
            16,
            False,
            "n = 40 is not a multiple of the block: mask the loads and stores past n, and give "
            "the positions past n the score −inf.",
        ),
        ((1, 2), 40, 16, True, "query i sees the keys j ≤ i; a block of keys after a block of queries is hidden."),
        ((1, 2), 64, 16, True, "query i sees the keys j ≤ i; a block of keys after a block of queries is hidden."),
        ((1, 1), 24, 64, True, "pass d to the kernels as a `tl.constexpr` and use it for every offset and for 1/√d."),
        ((1, 1), 20, 128, False, "pass d to the kernels as a `tl.constexpr` and use it for every offset and for 1/√d."),
    )
    for batch, n, d, causal, hint in stages:
        problem = Problem(rng, batch, n, n, d, d, causal)
        grads, where = _triton_run(triton_attention_backward, setting, problem)
        _diagnose(grads, problem, TRITON, where, TRITON_BLOCKS, setting.tolerance, hint)
    where = "on a CUDA GPU in float16" if setting.cuda else "in Triton's interpreter, float32"
    passed(
        TRITON,
        f"equal to autograd through F.scaled_dot_product_attention {where}, causal or not, ragged last block, "
        "d = 16 to 128",
    )
