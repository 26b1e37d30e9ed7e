"""Checks for lesson 13, attention on a GPU: `tiled_attention`, the online softmax.

The reference is `F.scaled_dot_product_attention` in float64. A guard (a `TorchDispatchMode`)
watches every tensor the learner's operators create and catches the whole n × m score
matrix (or mask), and calls to PyTorch's own fused attention.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

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

NAME = "tiled_attention"


class FusedWatch(TorchFunctionMode):
    """Remembers the first call of PyTorch's own attention (`F.scaled_dot_product_attention`,
    `F.multi_head_attention_forward`) made while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.fused: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if self.fused is None and ("scaled_dot_product_attention" in name or "multi_head_attention" in name):
            self.fused = name
        return func(*args, **(kwargs or {}))


class FullMatrixWatch(TorchDispatchMode):
    """Watches the outputs of every operator: remembers the first tensor that holds a whole
    n × m matrix (a shape with both n and m in it, or as many numbers as every batch's score
    matrices together), and the first fused attention operator called. Raises nothing, so the
    learner's code runs to its end; the check reads what was seen afterwards."""

    def __init__(self, n: int, m: int, batch: int) -> None:
        super().__init__()
        if n == m:
            raise ValueError("the watch tells queries from keys by their lengths: use n != m")
        self.n, self.m, self.limit = n, m, batch * n * m
        self.full: tuple[int, ...] | None = None
        self.fused: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name() if hasattr(func, "name") else str(func)
        if self.fused is None and "attention" in name:
            self.fused = name
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if self.full is None and isinstance(tensor, torch.Tensor):
                shape = tuple(tensor.shape)
                if tensor.numel() >= self.limit or (self.n in shape and self.m in shape):
                    self.full = shape
        return out


def _attention(Q, K, V, causal=False, scale=None, mask=None) -> torch.Tensor:
    """PyTorch's attention in float64: the reference everything is compared with."""
    return F.scaled_dot_product_attention(
        Q.double(), K.double(), V.double(), attn_mask=mask, is_causal=causal, scale=scale
    ).to(Q.dtype)


def _qkv(rng, batch: tuple, n: int, m: int, d: int, d_v: int, dtype=torch.float32, spread: float = 1.0):
    Q = spread * torch.randn(*batch, n, d, generator=rng, dtype=torch.float64)
    K = spread * torch.randn(*batch, m, d, generator=rng, dtype=torch.float64)
    V = torch.randn(*batch, m, d_v, generator=rng, dtype=torch.float64)
    return Q.to(dtype), K.to(dtype), V.to(dtype)


def _run(tiled_attention, Q, K, V, block_size: int, causal: bool):
    """The learner's output (NaN allowed: the caller says what it means) and a description of the call."""
    __tracebackhide__ = True
    inputs = {"Q": Q, "K": K, "V": V, "block_size": block_size}
    where = describe({**inputs, "causal": causal})
    out = call(tiled_attention, NAME, inputs, causal=causal)
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor):
        fail(
            f"your `{NAME}` returned a pair for {where}; return only `out`: a tiled attention never holds "
            "the whole weight matrix, so it has no weights to return."
        )
    shape = (*Q.shape[:-1], V.shape[-1])
    return expect_tensor(out, NAME, shape, what="output", where=where, allow_nan=True), where


def _no_nan(out: torch.Tensor, where: str, hint: str) -> None:
    __tracebackhide__ = True
    bad = ~torch.isfinite(out.detach())
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        kind = "NaN" if torch.isnan(out.detach()[index]) else "infinity"
        fail(f"your `{NAME}`'s output holds {kind} at {index} for {where}: {hint}")


def _agrees(out: torch.Tensor, reference: torch.Tensor) -> bool:
    """`out` equals `reference` wherever both are finite, and somewhere they are (NaN rows set aside)."""
    finite = torch.isfinite(out.detach()) & torch.isfinite(reference)
    return bool(finite.any()) and close(out.detach()[finite], reference[finite])


def _guard(tiled_attention, rng) -> list:
    """Stage 1: long sequences, small blocks: no n × m tensor, no fused attention, right shape."""
    __tracebackhide__ = True
    batch, n, m, d, d_v, block_size = (2, 3), 200, 232, 8, 12, 16
    Q, K, V = _qkv(rng, batch, n, m, d, d_v)
    results = []
    for causal in (False, True):
        watch, fused = FullMatrixWatch(n, m, math.prod(batch)), FusedWatch()
        with fused, watch:
            out, where = _run(tiled_attention, Q, K, V, block_size, causal)
        if fused.fused or watch.fused:
            fail(
                f"your `{NAME}` calls PyTorch's own attention (`{fused.fused or watch.fused}`) for {where}: the exercise "
                "is to compute it yourself, block by block, with the online softmax."
            )
        if watch.full:
            fail(
                f"your `{NAME}` built a tensor of shape {watch.full} for {where}: that holds a whole "
                f"n × m matrix (n = {n} queries × m = {m} keys), the very thing tiling avoids. Work on one "
                f"block of `block_size` keys at a time: the scores, and for causal=True the mask, of a block "
                f"have shape (..., n, block_size)."
            )
        results.append((Q, K, V, block_size, causal, out, where))
    return results


def _normalised(tiled_attention, rng) -> None:
    """Stage 2: with every value 1, every output is 1 (each row of weights sums to 1)."""
    __tracebackhide__ = True
    Q, K, _ = _qkv(rng, (), 5, 37, 8, 3)
    V = torch.ones(37, 3)
    out, where = _run(tiled_attention, Q, K, V, 8, False)
    _no_nan(out, where, "even plain attention over several blocks gives NaN here; check each step's exp and division.")
    if not close(out, torch.ones_like(out)):
        index = tuple(int(i) for i in np.unravel_index(int((out - 1).abs().argmax()), tuple(out.shape)))
        fail(
            f"with every value equal to 1 (V = ones) each output should be 1, since a row of weights sums to 1, "
            f"but yours is {float(out[index]):.4g} at {index} for {where}. Divide the running output by the "
            "running sum ℓ at the end: out = o / ℓ."
        )


def _one_block(tiled_attention, rng) -> None:
    """Stage 3: block_size >= m (one block): plain attention, scaled by √d."""
    __tracebackhide__ = True
    d, d_v = 8, 12
    for batch, n, m, block_size in (((3,), 6, 20, 32), ((), 4, 16, 16)):
        Q, K, V = _qkv(rng, batch, n, m, d, d_v)
        out, where = _run(tiled_attention, Q, K, V, block_size, False)
        _no_nan(
            out,
            where,
            f"with block_size = {block_size} ≥ m = {m} there is a single block, {m} keys long: does your loop "
            "reach it (`range(0, m, block_size)`)? With one block this is plain attention.",
        )
        if close(out, _attention(Q, K, V)):
            continue
        scales = {
            1.0: f"you did not scale the scores: divide Q Kᵀ by √d (d = {d}, the width of queries and keys).",
            1 / d: f"you divided the scores by d = {d}; divide by its square root, √d.",
            1 / math.sqrt(d_v): f"you scaled by √d_v (d_v = {d_v}, the width of the values); scale by √d "
            f"(d = {d}, the width of queries and keys).",
        }
        for scale, hint in scales.items():
            if close(out, _attention(Q, K, V, scale=scale)):
                fail(f"your `{NAME}` is wrong for {where}: {hint}")
        expect_close(
            out,
            _attention(Q, K, V),
            NAME,
            what="output",
            where=where,
            hint="with a single block (block_size ≥ m) your function is plain attention, softmax(Q Kᵀ / √d) V.",
        )


def _several_blocks(tiled_attention, rng) -> None:
    """Stage 4: several blocks; then a last block shorter than the others."""
    __tracebackhide__ = True
    d, d_v = 8, 12
    for batch, n, m, block_size in (((3,), 6, 32, 8), ((), 4, 5, 1)):
        Q, K, V = _qkv(rng, batch, n, m, d, d_v)
        out, where = _run(tiled_attention, Q, K, V, block_size, False)
        _no_nan(out, where, "look at the steps that combine one block with the running sums.")
        if close(out, _attention(Q, K, V)):
            continue
        last = slice(m - block_size, m)
        if close(out, _attention(Q, K[..., last, :], V[..., last, :])):
            fail(
                f"your `{NAME}`'s output attends to the last block of keys only, for {where}: add each block's "
                "share to the running sums ℓ and o rather than replacing them."
            )
        fail(
            f"your `{NAME}` is right with one block but wrong with several ({where}: {m // block_size} blocks). "
            "The usual cause: when a block raises a row's running maximum from m_old to m_new, what you summed "
            "so far was computed against m_old; rescale both the running sum ℓ and the running output o by "
            "exp(m_old − m_new) before adding the new block."
        )
    batch, n, m, block_size = (2,), 5, 29, 8
    Q, K, V = _qkv(rng, batch, n, m, d, d_v)
    out, where = _run(tiled_attention, Q, K, V, block_size, False)
    _no_nan(out, where, "the last block is shorter than the others here; look at how you slice and combine it.")
    if not close(out, _attention(Q, K, V)):
        fail(
            f"your `{NAME}` is wrong when m = {m} is not a multiple of block_size = {block_size} ({where}): the "
            f"last block holds only {m % block_size} keys. Loop with `for first in range(0, m, block_size)` and "
            "slice `K[..., first : first + block_size, :]`; the slice simply comes out shorter at the end."
        )


def _causal(tiled_attention, rng) -> None:
    """Stage 5: causal=True against `is_causal=True` (top-left: query i sees keys j ≤ i), n = m, n < m, n > m."""
    __tracebackhide__ = True
    d, d_v = 8, 6
    for batch, n, m, block_size in (((2,), 24, 24, 8), ((), 10, 29, 8), ((2, 2), 29, 10, 4)):
        Q, K, V = _qkv(rng, batch, n, m, d, d_v)
        out, where = _run(tiled_attention, Q, K, V, block_size, True)
        expected = _attention(Q, K, V, causal=True)
        if close(out, expected):
            continue
        i, j = torch.arange(n)[:, None], torch.arange(m)[None, :]
        if _agrees(out, _attention(Q, K, V)):
            fail(
                f"with causal=True your `{NAME}` gives the same output as without it ({where}): every query "
                "still sees the keys after it, so it ignores `causal`. In each block, set the scores of keys "
                "j > i to −inf before the exp."
            )
        if n != m and _agrees(out, _attention(Q, K, V, mask=j <= i + (m - n))):
            fail(
                f"your causal mask is aligned bottom-right for {where}: with n ≠ m, PyTorch's is_causal aligns "
                "it top-left, so query i sees the keys j ≤ i, whatever m is (key k of a block starting at key "
                "`first` is position first + k)."
            )
        if _agrees(out, _attention(Q, K, V, mask=j >= i)):
            fail(
                f"your causal mask is the wrong way round for {where}: query i may see the keys j ≤ i (the "
                "past), not j ≥ i (the future)."
            )
        if n > 1 and _agrees(out[..., 1:, :], _attention(Q, K, V, mask=j < i)[..., 1:, :]):
            fail(
                f"your causal mask hides key i from query i ({where}), so query 0 sees no key at all: a query "
                "sees itself too, so hide only the keys j > i."
            )
        _no_nan(
            out,
            where,
            "with causal=True a block can hide every one of its keys from a query, so that query's scores in "
            "the block are all −inf, and a softmax of that block alone computes exp(−inf − (−inf)), which is NaN. "
            "Keep one running maximum per query over the blocks read so far: every query sees key 0, in the first "
            "block, so it is finite from then on, and exp(−inf − m) is 0.",
        )
        expect_close(
            out,
            expected,
            NAME,
            what="output",
            where=where,
            hint="query i sees the keys j ≤ i; in a block starting at key `first`, key k of the block is position first + k.",
        )


def _large_scores(tiled_attention, rng) -> None:
    """Stage 7: scores in the thousands (float64, so rounding is not the question): the running
    maximum keeps exp from overflowing."""
    __tracebackhide__ = True
    for causal in (False, True):
        Q, K, V = _qkv(rng, (2,), 12, 40, 8, 4, dtype=torch.float64, spread=25.0)
        out, where = _run(tiled_attention, Q, K, V, 8, causal)
        top = float((Q @ K.transpose(-2, -1)).abs().max() / math.sqrt(8))
        _no_nan(
            out,
            where + f" (scores up to {top:.0f})",
            "exp of a large score overflows. Subtract the running maximum before the exp, as the stable "
            "softmax does: exp(s − m) is at most 1.",
        )
        expect_close(
            out,
            _attention(Q, K, V, causal=causal),
            NAME,
            what="output",
            where=where + f" (scores up to {top:.0f})",
            hint="with large scores the softmax is nearly one-hot: subtract each row's running maximum before the exp.",
        )


def _float64(tiled_attention, rng) -> None:
    """Stage 6: float64 in, float64 out, to float64 accuracy (the running sums take Q's dtype)."""
    __tracebackhide__ = True
    Q, K, V = _qkv(rng, (2,), 16, 40, 8, 4, dtype=torch.float64)
    out, where = _run(tiled_attention, Q, K, V, 8, False)
    hint = (
        "create your running tensors with `dtype=Q.dtype, device=Q.device` (`torch.zeros` and `torch.full` "
        "make float32 tensors on the CPU unless told otherwise, and on a GPU the device matters too)."
    )
    if out.dtype != Q.dtype:
        fail(f"your `{NAME}` returned {out.dtype} for {Q.dtype} inputs ({where}): {hint}")
    expected = _attention(Q, K, V)
    if not close(out, expected, atol=1e-10, rtol=1e-9):
        error = float((out - expected).abs().max())
        if error < 1e-4:
            fail(f"for float64 inputs your output is off by {error:.1e}, float32's precision ({where}): {hint}")
        expect_close(out, expected, NAME, what="output", where=where)


def check_tiled_attention(tiled_attention) -> None:
    """`tiled_attention(Q, K, V, block_size, causal=False)`: equal to `F.scaled_dot_product_attention`,
    causal or not, without ever holding an n × m tensor (watched by `FullMatrixWatch`)."""
    __tracebackhide__ = True
    require_function(tiled_attention, NAME)
    rng = generator(11)
    guarded = _guard(tiled_attention, rng)
    _normalised(tiled_attention, rng)
    _one_block(tiled_attention, rng)
    _several_blocks(tiled_attention, rng)
    _causal(tiled_attention, rng)
    _float64(tiled_attention, rng)
    _large_scores(tiled_attention, rng)
    for Q, K, V, _, causal, out, where in guarded:
        _no_nan(out, where, "look at the steps that combine one block with the running sums.")
        expect_close(out, _attention(Q, K, V, causal=causal), NAME, what="output", where=where)
    passed(
        NAME,
        "equal to F.scaled_dot_product_attention, causal or not, n ≠ m, ragged last block, large scores, "
        "float64; never an n × m tensor",
    )
