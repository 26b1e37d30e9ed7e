"""Checks for lesson 13, attention on a GPU: `tiled_attention` (the online softmax in PyTorch),
`triton_attention` (the same as a Triton kernel) and `linear_attention`.

The reference is `F.scaled_dot_product_attention` in float64 (for linear attention, its
O(n²) formula in float64). A guard (a `TorchDispatchMode`) watches every tensor the learner's
operators create and catches the whole n × m score matrix (or mask), scores for every query
at once, and calls to PyTorch's own fused attention.
"""

from __future__ import annotations

import importlib
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from utils.checks._harness import (
    _remote,
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
    n × m matrix (a shape with both n and m in it, n twice when n = m, or as many numbers as
    every batch's score matrices together), and the first fused attention operator called.
    With `rows`, it also remembers the first tensor with n in its shape that holds more than
    `rows` numbers per query (scores for every query at once: the queries were not tiled).
    Raises nothing, so the learner's code runs to its end; the check reads what was seen afterwards."""

    def __init__(self, n: int, m: int, batch: int, rows: int | None = None) -> None:
        super().__init__()
        self.n, self.m, self.limit = n, m, batch * n * m
        self.row_limit = None if rows is None else batch * n * rows
        self.full: tuple[int, ...] | None = None
        self.untiled: tuple[int, ...] | None = None
        self.fused: str | None = None

    def _holds_both(self, shape: tuple[int, ...]) -> bool:
        if self.n == self.m:
            return shape.count(self.n) >= 2
        return self.n in shape and self.m in shape

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name() if hasattr(func, "name") else str(func)
        if self.fused is None and "attention" in name:
            self.fused = name
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            shape = tuple(tensor.shape)
            if self.full is None and (tensor.numel() >= self.limit or self._holds_both(shape)):
                self.full = shape
            if self.untiled is None and self.row_limit and self.n in shape and tensor.numel() > self.row_limit:
                self.untiled = shape
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
    batch, n, m, d, d_v, block_size = (2, 3), 200, 232, 8, 12, 40
    Q, K, V = _qkv(rng, batch, n, m, d, d_v)
    results = []
    for causal in (False, True):
        watch, fused = FullMatrixWatch(n, m, math.prod(batch), rows=max(d, d_v)), FusedWatch()
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
                f"block of queries and one block of keys at a time: the scores, and for causal=True the mask, of a block "
                f"have shape (..., block_size, block_size)."
            )
        if watch.untiled:
            fail(
                f"your `{NAME}` built a tensor of shape {watch.untiled} for {where}: that is every one of the "
                f"n = {n} queries against a block of keys at once. Tile the queries too: take them `block_size` "
                "at a time (`Q[..., row : row + block_size, :]`), and for each block of queries read the keys "
                "block by block, so that a block of scores has shape (..., block_size, block_size)."
            )
        results.append((Q, K, V, block_size, causal, out, where))
    return results


def _online_slip(Q, K, V, block_size: int, *, rescale_sum=True, rescale_out=True, divide=True) -> torch.Tensor:
    """The online softmax over blocks of keys (float64, no mask) with one of its steps left out: a model of a
    mistake, to name it when the learner's output matches it."""
    scores = Q.double() @ K.double().transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (..., n, m)
    row_max = torch.full((*scores.shape[:-1], 1), float("-inf"), dtype=torch.float64)
    total = torch.zeros_like(row_max)
    out = torch.zeros(*scores.shape[:-1], V.shape[-1], dtype=torch.float64)
    for first in range(0, K.shape[-2], block_size):
        block = scores[..., first : first + block_size]  # (..., n, b)
        new_max = torch.maximum(row_max, block.amax(dim=-1, keepdim=True))
        factor = torch.exp(row_max - new_max)  # c
        weights = torch.exp(block - new_max)
        total = (factor if rescale_sum else 1.0) * total + weights.sum(dim=-1, keepdim=True)
        out = (factor if rescale_out else 1.0) * out + weights @ V.double()[..., first : first + block_size, :]
        row_max = new_max
    return out / total if divide else out


def _normalised(tiled_attention, rng) -> None:
    """Stage 2: with every value 1, every output is 1 (each row of weights sums to 1)."""
    __tracebackhide__ = True
    Q, K, _ = _qkv(rng, (), 5, 37, 8, 3)
    V = torch.ones(37, 3)
    out, where = _run(tiled_attention, Q, K, V, 8, False)
    _no_nan(out, where, "even plain attention over several blocks gives NaN here; check each step's exp and division.")
    if close(out, torch.ones_like(out)):
        return
    index = tuple(int(i) for i in np.unravel_index(int((out - 1).abs().argmax()), tuple(out.shape)))
    said = (
        f"with every value equal to 1 (V = ones) each output should be 1, since a row of weights sums to 1, "
        f"but yours is {float(out[index]):.4g} at {index} for {where}."
    )
    if close(out, _online_slip(Q, K, V, 8, rescale_out=False)):
        fail(
            f"{said} You divide by ℓ at the end, but the running output o was not rescaled when a block raised "
            "the running maximum, while ℓ was: the running output must be rescaled by the same factor as ℓ, "
            "c = exp(row_max − new_max), before the block's share is added (o ← c·o + weights @ V_block)."
        )
    if close(out, _online_slip(Q, K, V, 8, rescale_sum=False)):
        fail(
            f"{said} You divide by ℓ at the end, but ℓ was not rescaled when a block raised the running maximum, "
            "while the running output o was: the running sum must be rescaled by the same factor as o, "
            "c = exp(row_max − new_max), before the block's sum is added (ℓ ← c·ℓ + weights.sum)."
        )
    if close(out, _online_slip(Q, K, V, 8, divide=False)):
        fail(f"{said} Divide the running output by the running sum ℓ at the end: out = o / ℓ.")
    fail(
        f"{said} Either the running output o is not divided by the running sum ℓ at the end (out = o / ℓ), or o "
        "and ℓ do not move together: whenever a block raises the running maximum, both must be rescaled by the "
        "same factor c = exp(row_max − new_max) before the block's share is added."
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
            "The usual cause: when a block raises a row's running maximum `row_max` to `new_max`, what you summed "
            "so far was computed against the old `row_max`; rescale both the running sum ℓ and the running output o "
            "by exp(row_max − new_max) before adding the new block."
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
    """Stage 5: causal=True against `is_causal=True` (query i sees keys j ≤ i), n = m, n < m, n > m."""
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
        if n < m and _agrees(out, _attention(Q, K, V, mask=j <= i + m - n)):
            fail(
                f"your causal mask is aligned bottom-right for {where}: query i sees the keys j ≤ i + m − n, as "
                "lesson 12's cache needed. Here `causal` means what `is_causal=True` does, aligned top-left: query "
                "i sees the keys j ≤ i (query 0 and key 0 are the same position), whatever n and m are."
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
            hint="query i sees the keys j ≤ i; in a block starting at key `first`, key k of the block is position "
            "first + k, and query r of a block starting at query `row` is position row + r.",
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
    causal or not (causal as `is_causal=True`: aligned top-left, query i sees keys j <= i, also when
    n != m; lesson 12's `grouped_query_attention` aligns it bottom-right), without ever holding an
    n × m tensor (watched by `FullMatrixWatch`)."""
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


# ---------------------------------------------------------------------------------------------
# triton_attention: the online softmax as a Triton kernel

TRITON = "triton_attention"
TRITON_BLOCKS = (16, 32, 64, 128)  # the block sizes a kernel may use (tl.dot needs at least 16)


def _scores64(Q, K) -> torch.Tensor:
    return Q.double().cpu() @ K.double().cpu().transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (..., n, m)


def _never_rescaled(Q, K, V, block: int) -> torch.Tensor:
    """The output of the mistake "never rescale", in closed form: key j of block b keeps the weight
    exp(s_j − M_b), M_b being the largest score in blocks 0..b (the running maximum when b arrived)."""
    scores = _scores64(Q, K)  # (..., n, m)
    block_of = torch.arange(scores.shape[-1]) // block  # (m,): the block of each key
    block_max = torch.stack([scores[..., block_of == b].amax(dim=-1) for b in range(int(block_of[-1]) + 1)], -1)
    seen_max = block_max.cummax(dim=-1).values  # (..., n, blocks)
    weights = torch.exp(scores - seen_max[..., block_of])  # (..., n, m)
    return (weights @ V.double().cpu()) / weights.sum(dim=-1, keepdim=True)  # (..., n, d_v)


def _padding_counted(Q, K, V, block: int) -> torch.Tensor:
    """The output of the mistake "the last block's missing keys read as zeros and kept": each of them
    adds a score of 0 to the softmax and a value of 0 to the sum."""
    scores = _scores64(Q, K)  # (..., n, m)
    extra = -scores.shape[-1] % block
    weights = torch.softmax(F.pad(scores, (0, extra)), dim=-1)  # (..., n, m + extra)
    return weights[..., : scores.shape[-1]] @ V.double().cpu()  # (..., n, d_v)


class _TritonSetting:
    """Where the check runs the learner's kernel: a CUDA GPU (half precision), else Triton's interpreter."""

    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.dtype = torch.float16 if self.cuda else torch.float32
        self.tolerance = {"atol": 2e-2, "rtol": 2e-2} if self.cuda else {"atol": 1e-4, "rtol": 1e-4}

    def qkv(self, rng, B: int, h: int, n: int, d: int):
        Q, K, V = torch.randn(3, B, h, n, d, generator=rng, dtype=torch.float64).unbind(0)
        return tuple(x.to(self.device, self.dtype) for x in (Q, K, V))

    def close(self, out, expected) -> bool:
        return close(out.float().cpu(), expected.float().cpu(), **self.tolerance)


def _triton_run(triton_attention, setting: _TritonSetting, Q, K, V, causal: bool):
    __tracebackhide__ = True
    inputs = {"Q": Q, "K": K, "V": V}
    where = describe({**inputs, "causal": causal})
    fused = FusedWatch()
    with fused:
        out = call(triton_attention, TRITON, inputs, causal=causal)
    if fused.fused:
        fail(
            f"your `{TRITON}` calls PyTorch's own attention (`{fused.fused}`) for {where}: the exercise is to "
            "launch your own `@triton.jit` kernel."
        )
    out = expect_tensor(out, TRITON, tuple(Q.shape), what="output", where=where, allow_nan=True)
    if out.device != Q.device:
        fail(f"your `{TRITON}` returned a tensor on {out.device} for inputs on {Q.device} ({where}).")
    bad = ~torch.isfinite(out.detach())
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        fail(
            f"your `{TRITON}`'s output holds NaN or infinity at {index} for {where}: look at the positions your "
            "masks leave out (keys past n, and for causal the keys after each query): their scores must be −inf "
            "before the exp, and every query sees key 0, so its running maximum is finite after the first block."
        )
    return out, where


def _triton_one_block(triton_attention, setting, rng) -> None:
    __tracebackhide__ = True
    d = 16
    Q, K, V = setting.qkv(rng, 1, 2, 16, d)
    out, where = _triton_run(triton_attention, setting, Q, K, V, False)
    if setting.close(out, _attention(Q, K, V)):
        return
    scales = {
        1.0: f"you forgot the scale: multiply the scores q·k by 1/√d (d = {d}) before the exp.",
        1 / d: f"you divided the scores by d = {d}; divide by its square root, √d.",
    }
    for scale, hint in scales.items():
        if setting.close(out, _attention(Q, K, V, scale=scale)):
            fail(f"your `{TRITON}` is wrong for {where}: {hint}")
    fail(
        f"your `{TRITON}` is wrong for {where}, where n = 16 fits in a single block of keys: with one block this is "
        "plain attention, softmax(q·kᵀ / √d) v, divided by the row's sum at the end. Print your output beside "
        "`F.scaled_dot_product_attention(Q, K, V)` on this input."
    )


def _triton_several_blocks(triton_attention, setting, rng) -> None:
    __tracebackhide__ = True
    Q, K, V = setting.qkv(rng, 1, 2, 128, 32)
    out, where = _triton_run(triton_attention, setting, Q, K, V, False)
    if setting.close(out, _attention(Q, K, V)):
        return
    for block in TRITON_BLOCKS[:-1]:
        if setting.close(out, _never_rescaled(Q, K, V, block)):
            fail(
                f"your `{TRITON}` is right with one block of keys but wrong with several ({where}, blocks of "
                f"{block} keys): when a block raises a row's running maximum `row_max` to `new_max`, what you "
                "summed so far was measured against the old maximum. Rescale the running sum and the running "
                "output by exp(row_max − new_max) before adding the new block."
            )
    fail(
        f"your `{TRITON}` is right with one block of keys but wrong with several ({where}): look at how a new "
        "block joins the running maximum, sum and output (rescale both by exp(row_max − new_max), then add)."
    )


def _triton_partial_block(triton_attention, setting, rng) -> None:
    __tracebackhide__ = True
    n = 40
    Q, K, V = setting.qkv(rng, 1, 2, n, 16)
    out, where = _triton_run(triton_attention, setting, Q, K, V, False)
    if setting.close(out, _attention(Q, K, V)):
        return
    for block in TRITON_BLOCKS:
        if setting.close(out, _padding_counted(Q, K, V, block)):
            fail(
                f"your `{TRITON}` is wrong when n = {n} is not a multiple of your block of {block} keys ({where}): "
                f"the last block runs past the end, and its missing keys (filled with `other=0.0` by the masked load) still get a weight. "
                "Set the scores of keys j ≥ n to −inf with `tl.where` before the exp (a masked `tl.load` only "
                "fills them with `other`)."
            )
    fail(
        f"your `{TRITON}` is right when n is a multiple of the block, wrong for n = {n} ({where}): mask the loads "
        "and stores of the last, partial block (`mask=positions < n`) and give the keys past n a score of −inf."
    )


def _triton_causal(triton_attention, setting, rng) -> None:
    __tracebackhide__ = True
    for n in (40, 64):
        Q, K, V = setting.qkv(rng, 1, 2, n, 16)
        out, where = _triton_run(triton_attention, setting, Q, K, V, True)
        if setting.close(out, _attention(Q, K, V, causal=True)):
            continue
        if setting.close(out, _attention(Q, K, V)):
            fail(
                f"with causal=True your `{TRITON}` gives the same output as without it ({where}): every query "
                "still sees the keys after it. Pass `causal` to the kernel as a `tl.constexpr` and, when it is "
                "set, give the scores of keys j > i the value −inf."
            )
        fail(
            f"your `{TRITON}` is wrong with causal=True ({where}): query i sees the keys j ≤ i, itself included. "
            "In a key block starting at `first`, key k is position first + k; a key block that starts after the "
            "last query of your block is hidden entirely, so you can stop the loop before it."
        )


def _triton_widths(triton_attention, setting, rng) -> None:
    __tracebackhide__ = True
    for d, n, causal in ((64, 24, True), (128, 20, False)):
        Q, K, V = setting.qkv(rng, 1, 1, n, d)
        out, where = _triton_run(triton_attention, setting, Q, K, V, causal)
        if not setting.close(out, _attention(Q, K, V, causal=causal)):
            fail(
                f"your `{TRITON}` is right for d = 16 and 32 but wrong for d = {d} ({where}): pass d to the kernel "
                "as a `tl.constexpr` (a block's shape must be known when the kernel is compiled) and use it for "
                "every offset, `tl.arange(0, D)`, and the scale 1/√d."
            )


def triton_can_check(fn, name: str, kernels: str) -> bool:
    """Whether a Triton exercise (`name`, lessons 13 and 14) can be checked here: False, saying so, where Triton
    cannot be imported (and, under nbgrader, failing: a check that did not run earns nothing); without a GPU, the
    learner must have asked for Triton's interpreter."""
    __tracebackhide__ = True
    why = _triton_missing()
    if why:
        if os.environ.get("NBGRADER_EXECUTION"):  # grading: a check that did not run earns nothing
            fail(f"Triton cannot be imported where this notebook is graded, so your `{name}` was not checked.")
        print(f"{why}: your `{name}` was not checked. Run it on Colab (or any Linux machine).")
        return False
    require_function(fn, name)
    if not torch.cuda.is_available() and not _remote(fn) and os.environ.get("TRITON_INTERPRET") != "1":
        fail(
            f"there is no CUDA GPU here, so Triton must run your {kernels} in its interpreter: set "
            "`os.environ['TRITON_INTERPRET'] = '1'` before `import triton` (restart the kernel and run the "
            "set-up cell again)."
        )
    return True


def _triton_missing() -> str:
    """Why Triton cannot run here ("" when it can): not installed (it ships for Linux only), or broken."""
    try:
        importlib.import_module("triton.language")
    except ImportError as error:
        if getattr(error, "name", None) in ("triton", "triton.language"):
            return "Triton is not installed here (it ships for Linux only)"
        return f"Triton is installed but cannot be imported ({type(error).__name__}: {str(error).splitlines()[0]})"
    except Exception as error:  # a Triton that does not fit this torch or this machine
        return f"Triton is installed but cannot be imported ({type(error).__name__}: {str(error).splitlines()[0]})"
    return ""


def check_triton_attention(triton_attention) -> None:
    """`triton_attention(Q, K, V, causal=False)` for `(B, h, n, d)` inputs: equal to
    `F.scaled_dot_product_attention` on a CUDA GPU (float16) or in Triton's interpreter (float32),
    causal or not, n not a multiple of the block, d from 16 to 128."""
    __tracebackhide__ = True
    if not triton_can_check(triton_attention, TRITON, "kernel"):
        return
    setting = _TritonSetting()
    rng = generator(13)
    _triton_one_block(triton_attention, setting, rng)
    _triton_several_blocks(triton_attention, setting, rng)
    _triton_partial_block(triton_attention, setting, rng)
    _triton_causal(triton_attention, setting, rng)
    _triton_widths(triton_attention, setting, rng)
    where = "on a CUDA GPU in float16" if setting.cuda else "in Triton's interpreter, float32"
    passed(TRITON, f"equal to F.scaled_dot_product_attention {where}, causal or not, ragged last block, d = 16 to 128")


# ---------------------------------------------------------------------------------------------
# linear_attention: φ(q)·φ(k) with φ = elu + 1, reassociated

LINEAR = "linear_attention"


def _phi(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1


def _linear_reference(Q, K, V, causal=False, normalise=True, causal_denominator=True) -> torch.Tensor:
    """The O(n²) formula in float64: out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j)."""
    Q, K, V = Q.double(), K.double(), V.double()
    similarity = _phi(Q) @ _phi(K).transpose(-2, -1)  # (..., n, m)
    full = similarity
    if causal:
        similarity = similarity * torch.ones(similarity.shape[-2:], dtype=torch.bool).tril()
    out = similarity @ V  # (..., n, d_v)
    if not normalise:
        return out
    denominator = (similarity if causal_denominator else full).sum(dim=-1, keepdim=True)  # (..., n, 1)
    return out / denominator


def _linear_run(linear_attention, Q, K, V, causal: bool):
    __tracebackhide__ = True
    inputs = {"Q": Q, "K": K, "V": V}
    where = describe({**inputs, "causal": causal})
    out = call(linear_attention, LINEAR, inputs, causal=causal)
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor):
        fail(f"your `{LINEAR}` returned a pair for {where}; return only `out`, of shape (..., n, d_v).")
    shape = (*Q.shape[:-1], V.shape[-1])
    return expect_tensor(out, LINEAR, shape, what="output", where=where), where


def _linear_guard(linear_attention, rng) -> None:
    __tracebackhide__ = True
    d, d_v = 8, 6
    for batch, n, m, causal in (((2, 3), 200, 232, False), ((2,), 200, 200, True)):
        Q, K, V = _qkv(rng, batch, n, m, d, d_v)
        watch, fused = FullMatrixWatch(n, m, math.prod(batch)), FusedWatch()
        with fused, watch:
            _, where = _linear_run(linear_attention, Q, K, V, causal)
        if fused.fused or watch.fused:
            fail(
                f"your `{LINEAR}` calls PyTorch's own attention (`{fused.fused or watch.fused}`) for {where}: "
                "linear attention is another formula; compute it yourself."
            )
        if watch.full:
            fail(
                f"your `{LINEAR}` built a tensor of shape {watch.full} for {where}: that holds a whole n × m "
                f"matrix (n = {n} queries × m = {m} keys), the very thing linear attention avoids. Multiply "
                "φ(K)ᵀ V first, a (..., d, d_v) matrix, then φ(Q) by it"
                + (": for causal=True keep running sums over positions (`torch.cumsum`)." if causal else ".")
            )


def _linear_values(linear_attention, rng) -> None:
    __tracebackhide__ = True
    for causal, (n, m) in ((False, (7, 11)), (True, (7, 7))):
        Q, K, V = _qkv(rng, (3,), n, m, 8, 5)
        out, where = _linear_run(linear_attention, Q, K, V, causal)
        if close(out, _linear_reference(Q, K, V, causal)):
            continue
        if close(out, _linear_reference(Q, K, V, causal, normalise=False)):
            fail(
                f"your `{LINEAR}` does not divide by the normaliser ({where}): out_i = φ(q_i)ᵀ S / φ(q_i)·z with "
                "z = Σ_j φ(k_j), so that each query's weights φ(q_i)·φ(k_j) / Σ_j φ(q_i)·φ(k_j) sum to 1."
            )
        if causal and close(out, _linear_reference(Q, K, V, causal, causal_denominator=False)):
            fail(
                f"with causal=True your `{LINEAR}`'s denominator sums every key ({where}): the numerator stops at "
                "key i but the normaliser must too, z_i = Σ_(j ≤ i) φ(k_j) (a running sum, like the numerator's)."
            )
        if causal and close(out, _linear_reference(Q, K, V)):
            fail(
                f"with causal=True your `{LINEAR}` gives the same output as without it ({where}): query i may see "
                "only keys j ≤ i. Keep running sums over positions: S_i = Σ_(j ≤ i) φ(k_j) v_jᵀ and "
                "z_i = Σ_(j ≤ i) φ(k_j)."
            )
        if close(out, _attention(Q, K, V, causal=causal)):
            fail(
                f"your `{LINEAR}` computes softmax attention ({where}): linear attention replaces "
                "exp(q·k / √d) by φ(q)·φ(k) with φ(x) = elu(x) + 1, and no scaling."
            )
        expect_close(
            out,
            _linear_reference(Q, K, V, causal),
            LINEAR,
            what="output",
            where=where,
            hint="φ(x) = F.elu(x) + 1 on queries and keys (no √d); out = φ(Q) (φ(K)ᵀ V) / (φ(Q) Σ_j φ(k_j)).",
        )


def check_linear_attention(linear_attention) -> None:
    """`linear_attention(Q, K, V, causal=False)`: φ = elu + 1, equal to its O(n²) formula, causal
    or not, without ever holding an n × m tensor."""
    __tracebackhide__ = True
    require_function(linear_attention, LINEAR)
    rng = generator(17)
    _linear_guard(linear_attention, rng)
    _linear_values(linear_attention, rng)
    Q, K, V = _qkv(rng, (2,), 9, 9, 4, 3, dtype=torch.float64)
    out, where = _linear_run(linear_attention, Q, K, V, True)
    if out.dtype != torch.float64:
        fail(f"your `{LINEAR}` returned {out.dtype} for float64 inputs ({where}): keep the inputs' dtype.")
    expect_close(out, _linear_reference(Q, K, V, True), LINEAR, what="output", where=where, atol=1e-10, rtol=1e-9)
    passed(LINEAR, "equal to Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j), causal or not; never an n × m tensor")
