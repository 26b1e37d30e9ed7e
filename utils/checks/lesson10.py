"""Checks for lesson 10, beyond self-attention: `CrossAttention` and `additive_scores`."""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.checks._harness import (
    CheckError,
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
from utils.checks.lesson08 import broadcast_shapes


def _expect_linear(module, attribute: str, d_in: int, d_out: int, reads: str) -> nn.Linear:
    __tracebackhide__ = True
    layer = getattr(module, attribute, None)
    if layer is None:
        fail(
            f"your CrossAttention has no attribute `{attribute}`: create the three projections in __init__ as "
            "`self.W_q`, `self.W_k` and `self.W_v`."
        )
    if not isinstance(layer, nn.Linear):
        fail(f"`{attribute}` should be an nn.Linear; yours is {type(layer).__name__}.")
    if layer.bias is not None:
        fail(f"`{attribute}` has a bias; the contract has none: nn.Linear(..., bias=False).")
    if (layer.in_features, layer.out_features) != (d_in, d_out):
        fail(
            f"`{attribute}` maps {layer.in_features} → {layer.out_features} features, but it reads {reads}, so it "
            f"should be nn.Linear({d_in}, {d_out}, bias=False) for CrossAttention(d_q = 6, d_kv = 10, d_k = 4)."
        )
    return layer


def _weights(Q: torch.Tensor, K: torch.Tensor, mask) -> torch.Tensor:
    """The attention weights softmax(Q Kᵀ / √d_k) over the allowed keys, from F.scaled_dot_product_attention."""
    shape = broadcast_shapes(Q.shape[:-2], K.shape[:-2], () if mask is None else mask.shape[:-2])
    m = K.shape[-2]
    identity = torch.eye(m, dtype=Q.dtype).expand(*shape, m, m)
    return F.scaled_dot_product_attention(
        Q.expand(*shape, *Q.shape[-2:]), K.expand(*shape, *K.shape[-2:]), identity, attn_mask=mask
    )


def _cross_shape_hint(message: str, d_q: int, d_kv: int, d_k: int) -> str:
    """Which sequence or operand a failed matrix product inside CrossAttention most likely mixed up."""
    product = re.search(r"shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)", message)
    if not product:
        return ""
    _, inner, rows, cols = (int(group) for group in product.groups())
    if (inner, rows, cols) == (d_kv, d_q, d_k):
        return f"W_q reads x_q ({d_q} features); you gave it x_kv ({d_kv} features)."
    if (inner, rows, cols) == (d_q, d_kv, d_k):
        return f"W_k and W_v read x_kv ({d_kv} features); you gave one of them x_q ({d_q} features)."
    if inner == cols == d_k:
        return "you multiplied Q by K as it is: the scores are Q @ K.transpose(-2, -1), (..., n, d_k) @ (..., d_k, m)."
    return ""


def _call_cross(module, inputs: dict, keywords: dict, d_q: int, d_kv: int, d_k: int):
    __tracebackhide__ = True
    try:
        return call(module, "CrossAttention", inputs, **keywords)
    except CheckError as error:
        hint = _cross_shape_hint(str(error), d_q, d_kv, d_k)
        if not hint:
            raise
        fail(f"{error}\n  Likely: {hint}")


def check_cross_attention(CrossAttention) -> None:
    """`CrossAttention(d_q, d_kv, d_k)`: W_q, W_k, W_v without bias; forward(x_q, x_kv, mask=None) equals
    F.scaled_dot_product_attention on the module's own projections."""
    __tracebackhide__ = True
    require_function(CrossAttention, "CrossAttention", kind="class")
    d_q, d_kv, d_k = 6, 10, 4
    with torch.random.fork_rng(devices=[]):  # building the module draws from the global RNG: give it back untouched
        module = call(CrossAttention, "CrossAttention", {"d_q": d_q, "d_kv": d_kv, "d_k": d_k})
    if not isinstance(module, nn.Module):
        fail("CrossAttention(...) should build an nn.Module: write `class CrossAttention(nn.Module)`.")
    W_q = _expect_linear(module, "W_q", d_q, d_k, "the queries' sequence x_q (d_q features)")
    W_k = _expect_linear(module, "W_k", d_kv, d_k, "the other sequence x_kv (d_kv features)")
    W_v = _expect_linear(module, "W_v", d_kv, d_k, "the other sequence x_kv (d_kv features)")
    rng = generator(100)
    for layer in (W_q, W_k, W_v):  # fresh weights, so that no projection can pass for another
        fresh = torch.randn(layer.weight.shape, generator=rng) / layer.in_features**0.5
        layer.load_state_dict({"weight": fresh}, strict=False)  # in place (and through the grader's proxy)
    cases = (
        ((5, d_q), (7, d_kv), None),
        ((2, 5, d_q), (2, 3, d_kv), torch.rand(5, 3, generator=rng) < 0.7),
        ((2, 3, 4, d_q), (2, 3, 8, d_kv), (torch.arange(8) < torch.tensor([8, 5])[:, None])[:, None, None, :]),
        ((4, d_q), (4, d_kv), None),
    )
    for q_shape, kv_shape, mask in cases:
        if mask is not None:
            mask[..., 0] = True  # no fully masked row
        x_q, x_kv = torch.randn(q_shape, generator=rng), torch.randn(kv_shape, generator=rng)
        inputs = {"x_q": x_q, "x_kv": x_kv}
        keywords = {} if mask is None else {"mask": mask}
        where = describe({**inputs, **keywords})
        result = _call_cross(module, inputs, keywords, d_q, d_kv, d_k)
        if isinstance(result, torch.Tensor) or not isinstance(result, (tuple, list)) or len(result) != 2:
            fail(
                f"your CrossAttention's forward returned {type(result).__name__} for {where}; return `(out, weights)`."
            )
        out, weights = result
        with torch.no_grad():
            Q, K, V = W_q(x_q), W_k(x_kv), W_v(x_kv)
        shape = broadcast_shapes(x_q.shape[:-2], x_kv.shape[:-2], () if mask is None else mask.shape[:-2])
        n, m = x_q.shape[-2], x_kv.shape[-2]
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (*shape, m, d_k) and n != m:
            fail(
                f"your output has shape {tuple(out.shape)} for {where}: one row per key. Cross-attention gives one "
                f"output per *query*, (..., n, d_k) = {(*shape, n, d_k)}: the queries come from x_q."
            )
        out = expect_tensor(out, "CrossAttention", (*shape, n, d_k), what="output", where=where)
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (*shape, m, n) and n != m:
            fail(
                f"your weights have shape {tuple(weights.shape)} for {where}; expected (..., n, m): one row per query."
            )
        weights = expect_tensor(weights, "CrossAttention", (*shape, n, m), what="weights", where=where)
        if not out.requires_grad:
            fail(
                f"your output does not depend on W_q, W_k, W_v through autograd ({where}): no gradient could train "
                "them. Leave out torch.no_grad() and .detach() in forward."
            )
        expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
        if not close(out, expected):
            hint = ""
            for wrong, said in (
                (1.0, "you did not scale the scores: divide them by √d_k."),
                (d_q**-0.5, "you scaled by √d_q, the width of x_q; scale by √d_k, the width of the projected queries."),
                (d_kv**-0.5, "you scaled by √d_kv, the width of x_kv; scale by √d_k, the width of the projected keys."),
                (1 / d_k, "you divided the scores by d_k; divide them by √d_k."),
            ):
                if close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=wrong)):
                    hint = said
            if not hint and mask is not None:
                if close(out, F.scaled_dot_product_attention(Q, K, V)):
                    hint = "your output ignores the mask."
                elif close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=~mask).nan_to_num(0.0)):
                    hint = "your mask has the opposite meaning: True means *may attend*, as in lesson 08."
            if not hint and mask is None and close(out, F.softmax(Q @ K.transpose(-2, -1) / d_k**0.5, dim=-2) @ V):
                hint = "your softmax runs over the queries (dim −2); run it over the keys, the last dimension."
            expect_close(out, expected, "CrossAttention", what="output", where=where, hint=hint)
        expected_weights = _weights(Q, K, mask)
        if n == m and close(weights.transpose(-2, -1), expected_weights):
            fail(f"your weights are transposed ({where}): row i holds query i's weights over the keys.")
        expect_close(weights, expected_weights, "CrossAttention", what="weights", where=where)
    passed(
        "CrossAttention",
        "queries from x_q, keys and values from x_kv; equals F.scaled_dot_product_attention on 4 shapes",
    )


def _additive_reference(queries, keys, W_q, W_k, w_v) -> torch.Tensor:
    """w_v · tanh(W_q q_i + W_k k_j), one pair (i, j) at a time."""
    n, m = queries.shape[-2], keys.shape[-2]
    batch = broadcast_shapes(queries.shape[:-2], keys.shape[:-2])
    scores = torch.empty(*batch, n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            hidden = torch.tanh(
                queries[..., i, :].double() @ W_q.double().T + keys[..., j, :].double() @ W_k.double().T
            )
            scores[..., i, j] = hidden @ w_v.double()
    return scores


def _broadcast_pairs(queries, keys, W_q, W_k):
    """(..., n, 1, d_a) and (..., 1, m, d_a): W_q q_i and W_k k_j, ready to add for every pair."""
    q = (queries @ W_q.T)[..., :, None, :]  # (..., n, d_q) @ (d_q, d_a) -> (..., n, 1, d_a)
    k = (keys @ W_k.T)[..., None, :, :]  # (..., m, d_kv) @ (d_kv, d_a) -> (..., 1, m, d_a)
    return q, k


_PRODUCT = re.compile(r"shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
_CONVENTION = (
    "W_q is (d_a, d_q) and W_k is (d_a, d_kv), written as Bahdanau writes W_q q for one column vector q; "
    "with queries as rows, the projection is `queries @ W_q.T` (…, n, d_q) → (…, n, d_a), and "
    "`keys @ W_k.T` for the keys."
)


def _shape_hint(message: str, inputs: dict) -> str:
    """Which operand of a failed matrix product is most likely the transposed one."""
    queries, keys, W_q, W_k, w_v = inputs.values()
    product = _PRODUCT.search(message)
    if product:
        right = (int(product.group(3)), int(product.group(4)))
        if right == tuple(W_q.shape):
            return f"you multiplied by W_q as it is, {tuple(W_q.shape)} = (d_a, d_q): transpose it. " + _CONVENTION
        if right == tuple(W_k.shape):
            return f"you multiplied by W_k as it is, {tuple(W_k.shape)} = (d_a, d_kv): transpose it. " + _CONVENTION
        return "a matrix product's shapes do not fit. " + _CONVENTION
    if "must match the size of tensor" in message or "size mismatch" in message:
        return (
            "two shapes do not fit. " + _CONVENTION + " Then add every query to every key with "
            "(…, n, 1, d_a) + (…, 1, m, d_a), and weigh the d_a hidden units with `@ w_v` (w_v is (d_a,))."
        )
    return ""


def _call_additive(additive_scores, inputs: dict):
    __tracebackhide__ = True
    try:
        return call(additive_scores, "additive_scores", inputs)
    except CheckError as error:
        hint = _shape_hint(str(error), inputs)
        if not hint:
            raise
        fail(f"{error}\n  Likely: {hint}")


def check_additive_scores(additive_scores) -> None:
    """`additive_scores(queries (..., n, d_q), keys (..., m, d_kv), W_q (d_a, d_q), W_k (d_a, d_kv), w_v (d_a,))`
    -> (..., n, m): the score w_v · tanh(W_q q + W_k k) of every query with every key."""
    __tracebackhide__ = True
    require_function(additive_scores, "additive_scores")
    rng = generator(101)
    cases = ((4, 3, 5, 6, 7, ()), (3, 5, 4, 2, 6, (2,)), (1, 4, 6, 8, 5, (3,)), (3, 4, 3, 4, 4, (2, 2)))
    for n, d_q, m, d_kv, d_a, batch in cases:
        inputs = {
            "queries": torch.randn(*batch, n, d_q, generator=rng),
            "keys": torch.randn(*batch, m, d_kv, generator=rng),
            "W_q": torch.randn(d_a, d_q, generator=rng),
            "W_k": torch.randn(d_a, d_kv, generator=rng),
            "w_v": torch.randn(d_a, generator=rng),
        }
        where = describe(inputs)
        value = _call_additive(additive_scores, inputs)
        if isinstance(value, torch.Tensor) and tuple(value.shape) == (*batch, m, n) and n != m:
            fail(
                f"your scores have shape {tuple(value.shape)} for {where}; expected {(*batch, n, m)}: one row per "
                "query, one column per key."
            )
        scores = expect_tensor(value, "additive_scores", (*batch, n, m), what="scores", where=where)
        expected = _additive_reference(*inputs.values())
        if close(scores, expected):
            continue
        queries, keys, W_q, W_k, w_v = inputs.values()
        q, k = _broadcast_pairs(queries, keys, W_q, W_k)
        hint = ""
        if close(scores, (q + k) @ w_v):
            hint = "you left out the tanh: the score is w_v · tanh(W_q q + W_k k)."
        elif close(scores, torch.tanh((q + k) @ w_v)):
            hint = "the tanh goes inside, on the d_a-vector W_q q + W_k k, and w_v weighs its d_a entries afterwards."
        elif close(scores, torch.tanh(q * k) @ w_v):
            hint = "you multiplied the projected query and key; additive attention *adds* them: tanh(W_q q + W_k k)."
        elif close(scores, torch.tanh(q + k).sum(dim=-1)):
            hint = "you summed the d_a hidden units; weigh them with w_v, a dot product: tanh(...) @ w_v."
        elif close(scores, torch.softmax(expected, dim=-1).to(scores.dtype)):
            hint = "these are the weights after a softmax; return the scores, before any softmax."
        elif n == m and close(scores, expected.transpose(-2, -1)):
            hint = "your scores are transposed: row i should hold query i's scores over the keys."
        elif close(scores, expected / d_a**0.5):
            hint = "you divided by √d_a; additive scores are not scaled."
        expect_close(scores, expected, "additive_scores", what="scores", where=where, hint=hint)
    passed("additive_scores", f"w_v · tanh(W_q q + W_k k) for every query and key ({len(cases)} shapes, with batches)")
