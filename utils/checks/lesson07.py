"""Checks for lesson 07, multi-head attention: `split_heads` / `merge_heads` and the
`MultiHeadAttention` module, compared with `torch.nn.MultiheadAttention` loaded with the
learner's own weights."""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn as nn

from utils.checks._harness import (
    CheckError,
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
from utils.checks.lesson05 import call_with_hint, expect_pair, expect_rows_sum_to_one
from utils.checks.lesson06 import build_module, expect_gradient, expect_linear, fill_weights

SPLIT_CASES = ((2, 5, 12, 3), (1, 4, 8, 2), (3, 3, 8, 4), (2, 4, 6, 1))  # (B, T, D, h)
NO_TRANSPOSE = (
    "positions are scrambled across heads: you reshaped (B, T, D) straight to (B, h, T, d_k), so a row of "
    "a head holds pieces of two positions. Split the features first, `x.view(B, T, h, d_k)`, then move the "
    "heads forward, `.transpose(1, 2)`."
)


def _takes_num_heads(merge_heads) -> bool:
    """Whether `merge_heads` wants `num_heads` too (the contract allows `merge_heads(x)` or `(x, num_heads)`)."""
    try:
        parameters = inspect.signature(merge_heads).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 and positional[1].default is inspect.Parameter.empty


def check_split_heads(split_heads, merge_heads) -> None:
    """`split_heads(x (B, T, D), h) -> (B, h, T, D/h)` and `merge_heads` back, head i holding features i·d_k.. ."""
    __tracebackhide__ = True
    require_function(split_heads, "split_heads")
    require_function(merge_heads, "merge_heads")
    rng = generator(9)
    wants_heads = _takes_num_heads(merge_heads)
    for B, T, D, h in SPLIT_CASES:
        d_k = D // h
        x = torch.randn(B, T, D, generator=rng)
        inputs = {"x": x, "num_heads": h}
        where = describe(inputs)
        heads = call_with_hint(split_heads, "split_heads", inputs)
        if isinstance(heads, torch.Tensor) and tuple(heads.shape) == (B, T, h, d_k) and T != h:
            fail(
                f"your `split_heads` returned shape (B, T, h, d_k) = {(B, T, h, d_k)} for {where}; the heads come "
                "before the positions, (B, h, T, d_k): add `.transpose(1, 2)`."
            )
        heads = expect_tensor(heads, "split_heads", (B, h, T, d_k), what="result", where=where)
        expected = x.view(B, T, h, d_k).transpose(1, 2)  # (B, h, T, d_k)
        if not close(heads, expected):
            if close(heads, x.reshape(B, h, T, d_k)):
                fail(f"your `split_heads` is wrong for {where}: {NO_TRANSPOSE}")
            if close(heads, x.view(B, T, d_k, h).permute(0, 3, 1, 2)):
                fail(
                    f"your `split_heads` is wrong for {where}: head 0 should hold features 0..d_k-1 of each position "
                    "(a block), yours holds every h-th feature. Reshape to (B, T, h, d_k), not (B, T, d_k, h)."
                )
            expect_close(
                heads,
                expected,
                "split_heads",
                what="result",
                where=where,
                hint="heads[b, i, t] should be x[b, t, i*d_k:(i+1)*d_k]: head i takes the i-th block of features.",
            )
        stacked = torch.randn(B, h, T, d_k, generator=rng)  # contiguous, as attention's `weights @ v` makes it
        merge_inputs = {"x": stacked, "num_heads": h} if wants_heads else {"x": stacked}
        merge_where = describe(merge_inputs)
        merged = call_with_hint(merge_heads, "merge_heads", merge_inputs)
        merged = expect_tensor(merged, "merge_heads", (B, T, D), what="result", where=merge_where)
        expected = stacked.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        if not close(merged, expected):
            if h > 1 and close(merged, stacked.reshape(B, T, D)):
                fail(
                    f"your `merge_heads` is wrong for {merge_where}: you reshaped (B, h, T, d_k) straight to "
                    "(B, T, D), which scrambles positions across heads. Move the positions forward first, "
                    "`.transpose(1, 2)` to (B, T, h, d_k), then `.reshape(B, T, D)`."
                )
            expect_close(
                merged,
                expected,
                "merge_heads",
                where=merge_where,
                hint="out[b, t, i*d_k:(i+1)*d_k] should be x[b, i, t]: the heads side by side, head 0 first.",
            )
        round_trip = call_with_hint(
            merge_heads, "merge_heads", {"x": heads, "num_heads": h} if wants_heads else {"x": heads}
        )
        expect_close(round_trip, x, "merge_heads", what="merge_heads(split_heads(x))", where=where)
    passed("split_heads", f"splits into (B, h, T, D/h) blocks and merge_heads undoes it ({len(SPLIT_CASES)} shapes)")


def _split_reference(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, h, T, D/h): the split that `merge_heads` is checked against."""
    B, T, D = x.shape
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, h, T, d_k)


def _merge_reference(x: torch.Tensor, num_heads: int | None = None) -> torch.Tensor:
    """(B, h, T, d_k) -> (B, T, h*d_k): the merge that `split_heads` is checked against."""
    B, h, T, d_k = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d_k)  # (B, T, D)


def _check_heads_first(MultiHeadAttention, name: str) -> None:
    """If the learner's module calls their own `split_heads` or `merge_heads`, check each one first."""
    __tracebackhide__ = True
    check_earlier_first(
        MultiHeadAttention,
        name,
        "split_heads",
        lambda split_heads: check_split_heads(split_heads, _merge_reference),
        "exercise 1",
    )
    check_earlier_first(
        MultiHeadAttention,
        name,
        "merge_heads",
        lambda merge_heads: check_split_heads(_split_reference, merge_heads),
        "exercise 1",
    )


# --- MultiHeadAttention ------------------------------------------------------------------------------

MHA_CONFIGS = ((12, 3), (8, 2), (8, 1), (16, 4))  # (d_model, num_heads)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _reference(module: nn.Module, d_model: int, num_heads: int, *, q_scale=1.0, v_identity=False, out_identity=False):
    """`nn.MultiheadAttention` holding `module`'s weights, or a variant of them (for the classic mistakes)."""
    with torch.random.fork_rng(devices=[]):
        reference = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    eye, zero = torch.eye(d_model), torch.zeros(d_model)
    v_weight, v_bias = (eye, zero) if v_identity else (module.v_proj.weight, module.v_proj.bias)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([q_scale * module.q_proj.weight, module.k_proj.weight, v_weight]))
        reference.in_proj_bias.copy_(torch.cat([q_scale * module.q_proj.bias, module.k_proj.bias, v_bias]))
        reference.out_proj.weight.copy_(eye if out_identity else module.out_proj.weight)
        reference.out_proj.bias.copy_(zero if out_identity else module.out_proj.bias)
    return reference.eval()


@torch.no_grad()
def _run(reference: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None, num_heads: int):
    """Our convention (mask True = may attend) translated to nn.MultiheadAttention's (True = may NOT attend)."""
    attn_mask = None
    if mask is not None:
        B, T, _ = x.shape
        attn_mask = (~mask).expand(B, num_heads, T, T).reshape(B * num_heads, T, T)  # (B·h, T, T)
    return reference(x, x, x, attn_mask=attn_mask, need_weights=True, average_attn_weights=False)


def _scrambles_positions(module: nn.Module, x: torch.Tensor, out: torch.Tensor, name: str) -> bool:
    """Shuffling the positions must shuffle the output the same way (no mask): attention is permutation-equivariant."""
    permutation = torch.roll(torch.arange(x.shape[1]), 1)
    shuffled = call_with_hint(module, name, {"x": x[:, permutation]})
    if not isinstance(shuffled, (tuple, list)) or not isinstance(shuffled[0], torch.Tensor):
        return False
    return shuffled[0].shape == out.shape and not close(shuffled[0], out[:, permutation], atol=1e-4)


def _two_sided_mask(T: int, rng: torch.Generator) -> torch.Tensor:
    """A random (T, T) mask with a True and a False in every row, so that its opposite is a valid mask too."""
    mask = torch.rand(T, T, generator=rng) > 0.5
    mask[range(T), range(T)] = True
    mask[range(T), [(i + 1) % T for i in range(T)]] = False
    return mask


def _check_masked(module, name, x, mask, label, reference, unmasked, num_heads) -> None:
    __tracebackhide__ = True
    B, T, D = x.shape
    inputs = {"x": x}
    where = f"{name}({D}, {num_heads}) on {describe(inputs)} with {label} mask of shape {tuple(mask.shape)}"
    try:
        result = call_with_hint(module, name, inputs, mask=mask)
    except AssertionError as error:  # the same call without a mask worked: the mask is the trouble
        raise CheckError(
            f"{error}\n  Hint: the mask can have any shape that broadcasts to (B, h, T, T); "
            "`scores.masked_fill(~mask, float('-inf'))` works for all of them."
        ) from None
    out, weights = expect_pair(result, name, (B, T, D), (B, num_heads, T, T), where)
    expected_out, expected_weights = _run(reference, x, mask, num_heads)
    if close(weights, expected_weights) and close(out, expected_out):
        return
    if close(out, unmasked[0]) and close(weights, unmasked[1]):
        fail(
            f"your `{name}` ignores its mask ({where}): the output is the same as without it. Before the softmax, "
            "set the scores where the mask is False to -inf: `scores.masked_fill(~mask, float('-inf'))`."
        )
    opposite_out, opposite_weights = _run(reference, x, ~mask, num_heads)
    if close(weights, opposite_weights) and close(out, opposite_out):
        fail(
            f"your `{name}` reads the mask the opposite way ({where}): here True means *may attend* (the opposite of "
            "nn.MultiheadAttention's `attn_mask`). Block the positions where the mask is False: "
            "`scores.masked_fill(~mask, float('-inf'))`."
        )
    allowed = mask.expand(B, num_heads, T, T)
    leaked = weights.detach().masked_fill(allowed, 0)
    if leaked.abs().max() > 1e-6:
        index = tuple(int(i) for i in (leaked.abs() == leaked.abs().max()).nonzero()[0])
        b, head, i, j = index
        fail(
            f"your weights give {float(weights.detach()[index]):.3g} to a position the mask forbids ({where}: batch {b}, head "
            f"{head}, query {i}, key {j}). Fill the forbidden scores with -inf before the softmax; a score of 0 "
            "still gets weight."
        )
    expect_rows_sum_to_one(
        weights, name, where, hint="Mask the scores before the softmax (with -inf), not the weights after it"
    )
    expect_close(weights, expected_weights, name, what="weight matrix", where=where)
    expect_close(out, expected_out, name, what="output", where=where)


def check_multi_head_attention(MultiHeadAttention) -> None:
    """`MultiHeadAttention(d_model, num_heads)` equals `nn.MultiheadAttention` with the same weights, masked or not."""
    __tracebackhide__ = True
    name = "MultiHeadAttention"
    require_function(MultiHeadAttention, name, kind="class")
    _check_heads_first(MultiHeadAttention, name)
    rng = generator(10)
    for D, h in MHA_CONFIGS:
        module = build_module(MultiHeadAttention, name, {"d_model": D, "num_heads": h})
        if getattr(module, "out_proj", None) is None and all(hasattr(module, p) for p in PROJECTIONS[:3]):
            fail(
                f"your `{name}` has no `out_proj`: multi-head attention ends with an output projection that mixes "
                "what the heads found. Add an output projection `self.out_proj` (an `nn.Linear` from d_model to d_model) and apply it to the "
                "merged heads."
            )
        for projection in PROJECTIONS:
            expect_linear(module, name, projection, D, D, bias=True, how="nn.Linear(d_model, d_model)")
        fill_weights(module, rng)
        reference = _reference(module, D, h)
        B, T = 2, 5
        x = torch.randn(B, T, D, generator=rng)
        inputs = {"x": x}
        where = f"{name}({D}, {h}) on {describe(inputs)}"
        result = call_with_hint(module, name, inputs)
        if isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], torch.Tensor):
            if h > 1 and tuple(result[1].shape) == (B, T, T):
                fail(
                    f"your weights have shape {(B, T, T)} for {where}: return every head's weights, "
                    f"(B, h, T, T) = {(B, h, T, T)}, not their average."
                )
        out, weights = expect_pair(result, name, (B, T, D), (B, h, T, T), where)
        expected_out, expected_weights = _run(reference, x, None, h)
        d_k = D // h
        if not close(weights, expected_weights):
            suspects = {
                "you scaled the scores by √d_model; each head's scores are scaled by its own width, "
                "√d_k = √(d_model / num_heads).": 1 / math.sqrt(h) if h > 1 else None,
                "you did not divide the scores by √d_k.": math.sqrt(d_k),
                "you scaled the scores by d_k; divide by its square root, √d_k.": 1 / math.sqrt(d_k),
            }
            for message, q_scale in suspects.items():
                if q_scale is not None and close(
                    weights, _run(_reference(module, D, h, q_scale=q_scale), x, None, h)[1]
                ):
                    fail(f"your `{name}` is wrong for {where}: {message}")
            if _scrambles_positions(module, x, out, name):
                fail(f"your `{name}` is wrong for {where}: {NO_TRANSPOSE}")
            expect_rows_sum_to_one(weights, name, where, hint="Apply the softmax over the keys, `dim=-1`")
            expect_close(weights, expected_weights, name, what="weight matrix", where=where)
        if not close(out, expected_out):
            if close(out, _run(_reference(module, D, h, out_identity=True), x, None, h)[0]):
                fail(
                    f"your `{name}` skips `out_proj` ({where}): after merging the heads, apply "
                    "`self.out_proj`, which mixes what the heads found."
                )
            if close(out, _run(_reference(module, D, h, v_identity=True), x, None, h)[0]):
                fail(f"your values skip `v_proj` ({where}): the heads average v = self.v_proj(x), not x.")
            if _scrambles_positions(module, x, out, name):
                fail(
                    f"your `{name}`'s output is wrong for {where}, though its weights are right: positions are "
                    "scrambled across heads when they are merged. Transpose (B, h, T, d_k) to (B, T, h, d_k) "
                    "before the reshape to (B, T, D)."
                )
            expect_close(out, expected_out, name, what="output", where=where)
        expect_gradient(module, out, name, PROJECTIONS)
        unmasked = (expected_out, expected_weights)
        masks = (
            (_two_sided_mask(T, rng), "a random"),
            (torch.tril(torch.ones(T, T, dtype=torch.bool)), "a causal"),
            (torch.arange(T) < torch.tensor([T, 3])[:, None, None, None], "a padding"),  # (B, 1, 1, T)
            ((torch.rand(B, h, T, T, generator=rng) > 0.4) | torch.eye(T, dtype=torch.bool), "a per-head"),
        )
        for mask, label in masks:
            _check_masked(module, name, x, mask, label, reference, unmasked, h)
    passed(
        name,
        "equals nn.MultiheadAttention with the same weights, per-head weights included, without and with "
        "masks of 4 shapes",
    )
