"""Checks for lesson 12, generation: `KVCache`, `repeat_kv` and `grouped_query_attention`.

The reference for attention is `F.scaled_dot_product_attention` in float64, on keys and values
repeated with `repeat_interleave` (what `enable_gqa=True` does) and, with `causal`, an explicit
bottom-right mask: the n queries are the last n of the m positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.checks._harness import (
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
    shape_of,
)

# ----------------------------------------------------------------------------------------------
# KVCache


def _length(cache, when: str) -> int:
    __tracebackhide__ = True
    if not hasattr(type(cache), "__len__"):
        fail("your KVCache has no `__len__`: define `def __len__(self)` that returns T, the number of positions held.")
    try:
        length = len(cache)
    except Exception as error:  # the learner's own error, in their terms
        fail(f"`len(cache)` raised {type(error).__name__}: {error}\n  {when}.")
    return length


def _new_cache(KVCache, after_another: bool):
    __tracebackhide__ = True
    cache = call(KVCache, "KVCache", {})
    if not callable(getattr(cache, "update", None)):
        fail("your KVCache has no method `update`: write `def update(self, k, v)` that returns (keys, values).")
    length = _length(cache, "for a new, empty cache, which holds T = 0 positions: return 0")
    if length != 0 and after_another:
        fail(
            f"`len(cache)` is {length} for a new, empty cache made after another was filled: two caches share "
            "their storage. Create it in `__init__` (`self.keys = None`), not as a class attribute (`keys = []` "
            "in the class body)."
        )
    if length != 0:
        fail(f"`len(cache)` is {length} for a new, empty cache; it should be 0.")
    return cache


def _update(cache, k: torch.Tensor, v: torch.Tensor, step: int):
    """One call of `cache.update(k, v)`: the pair it returns, each checked to be a float tensor."""
    __tracebackhide__ = True
    where = f"update {step}, k of shape {tuple(k.shape)} and v of shape {tuple(v.shape)}"
    result = call(cache.update, "KVCache.update", {"k": k, "v": v})
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        if result is None:
            fail(f"your `KVCache.update` returned None at {where}: did you forget `return keys, values`?")
        fail(
            f"your `KVCache.update` returned {shape_of(result)} at {where}; it should return "
            "the pair (keys, values): every key and every value held so far."
        )
    keys = expect_tensor(result[0], "KVCache.update", what="keys (the first of the pair)", where=where)
    values = expect_tensor(result[1], "KVCache.update", what="values (the second of the pair)", where=where)
    return keys, values, where


def _expect_all_so_far(returned: torch.Tensor, given: list, what: str, where: str, other: list) -> None:
    """`returned` is every tensor in `given`, concatenated along time (dim 2), oldest first."""
    __tracebackhide__ = True
    expected = torch.cat(given, dim=2)  # (B, h_kv, T, ·)
    B, h_kv, T, width = expected.shape
    t = given[-1].shape[2]
    shape = tuple(returned.shape)
    swapped = torch.cat(other, dim=2)
    if returned.shape == swapped.shape and close(returned, swapped, atol=0, rtol=0):
        fail(
            f"your `KVCache.update` returned the {'values' if what == 'keys' else 'keys'} where the {what} belong "
            f"at {where}: return (keys, values), in that order."
        )
    if shape == tuple(given[-1].shape) and T != t:
        fail(
            f"your `KVCache.update` returned {what} of shape {shape} at {where}: only this step's. It should "
            f"return every one held so far, shape {(B, h_kv, T, width)}: append the new ones to those already "
            "in the cache, and return the whole."
        )
    if shape != (B, h_kv, T, width):
        wrong_axis = {
            (B * len(given), h_kv, t, width): "along the batch axis (dim 0)",
            (B, h_kv * len(given), t, width): "along the heads axis (dim 1)",
            (B, h_kv, t, width * len(given)): "along the width axis (dim 3)",
        }.get(shape)
        if wrong_axis and len(given) > 1 and len({g.shape[2] for g in given}) == 1:
            fail(
                f"your `KVCache.update` appended {what} {wrong_axis} at {where}: append along time, dim 2 "
                f"(`torch.cat([old, new], dim=2)`); expected shape {(B, h_kv, T, width)}, got {shape}."
            )
        fail(
            f"your `KVCache.update` returned {what} of shape {shape} at {where}; expected {(B, h_kv, T, width)}: "
            "the batch, the heads, all T positions so far, the width."
        )
    if returned.dtype != expected.dtype:
        fail(
            f"your `KVCache.update` returned {what} of dtype {returned.dtype} for inputs of dtype {expected.dtype} "
            f"at {where}: keep the dtype of what you are given (torch.cat does; a buffer needs dtype=k.dtype)."
        )
    if close(returned, expected, atol=0, rtol=0):
        return
    if len(given) > 1 and close(returned, torch.cat(given[::-1], dim=2), atol=0, rtol=0):
        fail(
            f"your `KVCache.update` returned {what} newest first at {where}: position order matters, the "
            "oldest comes first and the newest last (`torch.cat([old, new], dim=2)`)."
        )
    expect_close(returned, expected, "KVCache.update", what=what, where=where, atol=0, rtol=0)


def expect_nothing_changed(name: str, kept_inputs: list, kept_returns: list, step: int) -> None:
    """After update `step` of a cache (`name`, lessons 12 and 15): no k or v it was given, and no keys or values it
    returned, has changed since. `kept_inputs` holds (k, copy of k, v, copy of v); `kept_returns` (copies, then
    the tensors returned)."""
    __tracebackhide__ = True
    for i, (k_in, k_was, v_in, v_was) in enumerate(kept_inputs, start=1):
        if k_in.shape != k_was.shape or not torch.equal(k_in, k_was) or not torch.equal(v_in, v_was):
            fail(
                f"your {name} changed the k or v it was given at update {i} (seen after update {step}): "
                "a cache must never change what it was given. Keep the tensors and build new ones with "
                "`torch.cat` or indexing, rather than writing into them (`out=`, `resize_`, `copy_`, `+=`)."
            )
    for i, (before_k, before_v, now_k, now_v) in enumerate(kept_returns, start=1):
        if now_k.shape != before_k.shape or not torch.equal(now_k, before_k) or not torch.equal(now_v, before_v):
            fail(
                f"the keys or values your {name} returned at update {i} changed when update {step} ran: "
                "what you return must stay as it was (the model may still be using it). Return new tensors "
                "(`torch.cat` makes them) rather than a buffer you later write into or resize."
            )


def _session(KVCache, shapes: list[int], dtype: torch.dtype, seed: int, after_another: bool = True):
    """Fill one cache with steps of these lengths; check every return, len, and that nothing given or
    returned earlier ever changes. Returns the cache and every key it was given."""
    __tracebackhide__ = True
    rng = generator(seed)
    B, h_kv, d, d_v = 2, 3, 4, 5
    cache = _new_cache(KVCache, after_another)
    given_k, given_v, kept_inputs, kept_returns = [], [], [], []
    for step, t in enumerate(shapes, start=1):
        k = torch.randn(B, h_kv, t, d, generator=rng, dtype=torch.float64).to(dtype)
        v = torch.randn(B, h_kv, t, d_v, generator=rng, dtype=torch.float64).to(dtype)
        kept_inputs.append((k, k.clone(), v, v.clone()))
        keys, values, where = _update(cache, k, v, step)
        given_k.append(k.clone())
        given_v.append(v.clone())
        _expect_all_so_far(keys, given_k, "keys", where, given_v)
        _expect_all_so_far(values, given_v, "values", where, given_k)
        T = sum(shapes[:step])
        length = _length(cache, f"after {where}")
        if length != T:
            if length == step:
                fail(
                    f"`len(cache)` is {length} after {step} updates, holding T = {T} positions: it counts the "
                    "calls to update, not the positions. Return the length of the time axis, keys.shape[2]."
                )
            fail(f"`len(cache)` is {length} after {where}; the cache holds T = {T} positions.")
        expect_nothing_changed("KVCache", kept_inputs, kept_returns, step)
        kept_returns.append((keys.detach().clone(), values.detach().clone(), keys, values))
    return cache, given_k


def check_kv_cache(KVCache) -> None:
    """`KVCache()`; `update(k, v)` appends along time and returns all keys and values so far;
    `len(cache)` is T; nothing it was given, nor anything it returned, ever changes."""
    __tracebackhide__ = True
    require_function(KVCache, "KVCache", kind="class")
    _session(KVCache, [2, 2, 2], torch.float32, seed=119, after_another=False)  # equal steps: a wrong axis shows
    first, given = _session(KVCache, [3, 1, 1, 2, 1], torch.float32, seed=120)  # a prompt, then one step at a time
    _session(KVCache, [1, 1], torch.float64, seed=121)
    if len(first) != sum(g.shape[2] for g in given):
        fail(
            f"`len(cache)` of one KVCache went from {sum(g.shape[2] for g in given)} to {len(first)} when "
            "another KVCache was filled: two caches share their storage. Create it in `__init__` "
            "(`self.keys = None`), not as a class attribute (`keys = []` in the class body)."
        )
    passed(
        "KVCache",
        "appends along time (prompt, then single steps), returns every key and value so far, len = T; "
        "never changes what it was given or returned; two caches stay apart",
    )


# ----------------------------------------------------------------------------------------------
# repeat_kv

REPEAT = "repeat_kv"


def check_repeat_kv(repeat_kv) -> None:
    """`repeat_kv(x (B, h_kv, T, d), groups)` → `(B, h_kv·groups, T, d)`, head g repeated for query
    heads g·groups … g·groups + groups − 1: `x.repeat_interleave(groups, dim=1)`."""
    __tracebackhide__ = True
    require_function(repeat_kv, REPEAT)
    rng = generator(122)
    for B, h_kv, T, d, groups in ((2, 3, 5, 4, 2), (1, 2, 3, 2, 4), (1, 1, 4, 3, 3), (2, 2, 4, 3, 1)):
        x = torch.randn(B, h_kv, T, d, generator=rng)
        inputs = {"x": x, "groups": groups}
        where = describe(inputs)
        out = call(repeat_kv, REPEAT, inputs)
        shape = (B, h_kv * groups, T, d)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, h_kv, T * groups, d) and groups > 1:
            fail(
                f"your `{REPEAT}` repeated along time (dim 2) for {where}, giving shape {tuple(out.shape)}; "
                f"repeat the heads (dim 1), to shape {shape}."
            )
        out = expect_tensor(out, REPEAT, shape, where=where)
        expected = x.repeat_interleave(groups, dim=1)
        if close(out, expected):
            continue
        if close(out, x.repeat(1, groups, 1, 1)):
            fail(
                f"your `{REPEAT}` tiles the heads for {where}: query head i gets key/value head i mod {h_kv} "
                f"(what `x.repeat(1, groups, 1, 1)` does), so the heads come out in the order 0, 1, …, 0, 1, …. "
                f"Head g must serve the neighbouring query heads g·groups … g·groups + groups − 1 (0, 0, 1, 1, … "
                "for groups = 2): repeat each head in place, `x.repeat_interleave(groups, dim=1)`."
            )
        if close(out, x[:, :1].expand(shape)):
            fail(
                f"every query head gets key/value head 0 from your `{REPEAT}` for {where}: head g must serve "
                "query heads g·groups … g·groups + groups − 1, so each of the h_kv heads is repeated `groups` times."
            )
        expect_close(
            out,
            expected,
            REPEAT,
            where=where,
            hint="output head j should be input head j // groups: `x.repeat_interleave(groups, dim=1)`.",
        )
    passed(REPEAT, "each key/value head repeated for its `groups` neighbouring query heads, multi-query included")


# ----------------------------------------------------------------------------------------------
# grouped_query_attention

NAME = "grouped_query_attention"


def _reference(Q, K, V, causal=False, *, scale=None, heads="grouped", mask="bottom-right") -> torch.Tensor:
    """Attention in float64 with the key/value heads `grouped` (right), `tiled` or all `head 0`, and
    with `causal` the mask aligned `bottom-right` (right), `top-left`, or hiding the diagonal."""
    h, h_kv = Q.shape[1], K.shape[1]
    groups = h // h_kv
    expand = {
        "grouped": lambda x: x.repeat_interleave(groups, dim=1),
        "tiled": lambda x: x.repeat(1, groups, 1, 1),
        "head 0": lambda x: x[:, :1].expand(-1, h, -1, -1),
    }[heads]
    K, V = expand(K.double()), expand(V.double())  # (B, h, m, ·)
    n = Q.shape[-2]  # queries
    m = K.shape[-2]  # keys
    allowed = None
    if causal:
        offset = {"bottom-right": m - n, "top-left": 0, "no diagonal": m - n - 1}[mask]
        allowed = torch.ones(n, m, dtype=torch.bool).tril(diagonal=offset)  # (n, m)
    return F.scaled_dot_product_attention(Q.double(), K, V, attn_mask=allowed, scale=scale).to(Q.dtype)


def _inverted(out: torch.Tensor, Q, K, V) -> bool:
    """Whether `out` is causal attention with the mask inverted: the allowed keys hidden, the others seen
    (a mask that is True where a query may attend, passed to `masked_fill`, which hides where it is True)."""
    n, m, groups = Q.shape[-2], K.shape[-2], Q.shape[1] // K.shape[1]
    K, V = K.double().repeat_interleave(groups, dim=1), V.double().repeat_interleave(groups, dim=1)
    hidden = torch.ones(n, m, dtype=torch.bool).tril(diagonal=m - n)  # (n, m): the allowed keys, hidden
    scores = (Q.double() @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])).masked_fill(hidden, float("-inf"))
    expected = scores.softmax(dim=-1) @ V  # (B, h, n, d_v): NaN in a row that hides every key
    out = out.detach().double()
    nan = torch.isnan(expected)
    if not torch.equal(torch.isnan(out), nan):
        return False
    return bool(nan.all()) or close(out[~nan], expected[~nan])


def _qkv(rng, B, h, h_kv, n, m, d, d_v):
    Q = torch.randn(B, h, n, d, generator=rng)
    K = torch.randn(B, h_kv, m, d, generator=rng)
    V = torch.randn(B, h_kv, m, d_v, generator=rng)
    return Q, K, V


def _diagnose(out, Q, K, V, causal: bool, where: str) -> None:
    """Name the classic mistake `out` matches, if any; else point at the entry furthest off."""
    __tracebackhide__ = True
    d, d_v = Q.shape[-1], V.shape[-1]
    n = Q.shape[-2]  # queries
    m = K.shape[-2]  # keys
    h, h_kv = Q.shape[1], K.shape[1]
    if causal and n < m:
        if close(out, _reference(Q, K, V, True, mask="top-left")):
            fail(
                f"your `{NAME}`'s causal mask is aligned top-left for {where}: query i sees only keys j ≤ i, "
                f"as `F.scaled_dot_product_attention(..., is_causal=True)` does when n < m. With a cache the "
                f"n = {n} queries are the LAST n of the m = {m} positions, so query i may see keys "
                f"j ≤ i + m − n (bottom-right): `torch.ones(n, m, dtype=torch.bool).tril(diagonal=m - n)`."
            )
    if not causal and n <= m and close(out, _reference(Q, K, V, True)):
        fail(
            f"with causal=False your `{NAME}` masks the keys after each query for {where}: apply the mask "
            "only when `causal` is True (`if causal:`); without it every query sees every key."
        )
    if causal and close(out, _reference(Q, K, V, False)):
        fail(
            f"with causal=True your `{NAME}` gives the same output as without it for {where}: the queries "
            "still see the keys after them. Hide the keys j > i + m − n with −inf before the softmax."
        )
    if causal and close(out, _reference(Q, K, V, True, mask="no diagonal"), atol=1e-4):
        fail(
            f"your causal mask hides each query's own position for {where}: query i may see key j = i + m − n "
            "(itself) and everything before it: keep the diagonal, `tril(diagonal=m - n)`."
        )
    scales = {
        1.0: f"you did not scale the scores: divide Q Kᵀ by √d (d = {d}, the width of queries and keys).",
        1 / d: f"you divided the scores by d = {d}; divide by its square root, √d.",
        1 / math.sqrt(d_v): f"you scaled by √d_v (d_v = {d_v}); scale by √d (d = {d}, the width of queries and keys).",
    }
    for scale, hint in scales.items():
        if (scale != 1 / math.sqrt(d)) and close(out, _reference(Q, K, V, causal, scale=scale)):
            fail(f"your `{NAME}` is wrong for {where}: {hint}")
    if h_kv > 1 and h > h_kv and close(out, _reference(Q, K, V, causal, heads="tiled")):
        fail(
            f"your `{NAME}` gives query head i the key/value head i mod h_kv for {where} (the heads tiled, as "
            "`K.repeat(1, groups, 1, 1)` does). Key/value head g serves the neighbouring query heads "
            "g·groups … g·groups + groups − 1: `repeat_interleave(groups, dim=1)`, which is your `repeat_kv`."
        )
    if h_kv > 1 and close(out, _reference(Q, K, V, causal, heads="head 0")):
        fail(
            f"every query head of your `{NAME}` attends with key/value head 0 for {where}: with h = {h} query "
            f"heads and h_kv = {h_kv} key/value heads, head g serves query heads g·groups … g·groups + groups − 1."
        )
    expect_close(
        out,
        _reference(Q, K, V, causal),
        NAME,
        what="output",
        where=where,
        hint="repeat K and V with your repeat_kv (groups = h // h_kv), then softmax(Q Kᵀ / √d) V, the softmax "
        "over the keys (the last axis)" + (", with the mask j ≤ i + m − n." if causal else "."),
    )


def check_grouped_query_attention(grouped_query_attention) -> None:
    """`grouped_query_attention(Q, K, V, causal=False)`: equal to SDPA with `enable_gqa=True`;
    with `causal`, the n queries are the last n of the m positions (bottom-right, as a KV cache
    needs; not `is_causal=True`, which aligns it top-left, as lesson 13's `tiled_attention` does)."""
    __tracebackhide__ = True
    require_function(grouped_query_attention, NAME)
    check_earlier_first(grouped_query_attention, NAME, "repeat_kv", check_repeat_kv, "the exercise before")
    rng = generator(123)
    cases = (  # B, h, h_kv, n, m, d, d_v, causal
        (2, 6, 2, 5, 5, 4, 3, False),  # grouped-query, self-attention
        (1, 4, 4, 4, 6, 8, 8, False),  # multi-head: groups = 1
        (2, 4, 1, 3, 7, 4, 5, False),  # multi-query: one key/value head
        (2, 4, 2, 1, 9, 8, 4, True),  # causal, one new query and nine keys: a step of decoding
        (1, 6, 2, 3, 8, 4, 4, True),  # causal, three new queries and eight keys
        (2, 6, 3, 6, 6, 4, 3, True),  # causal, n = m: the whole prompt at once
    )
    for B, h, h_kv, n, m, d, d_v, causal in cases:
        Q, K, V = _qkv(rng, B, h, h_kv, n, m, d, d_v)
        inputs = {"Q": Q, "K": K, "V": V}
        where = describe({**inputs, "causal": causal})
        out = call(grouped_query_attention, NAME, inputs, causal=causal)
        if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor):
            fail(f"your `{NAME}` returned a pair for {where}; return only `out` (B, h, n, d_v).")
        if isinstance(out, torch.Tensor) and h_kv < h and tuple(out.shape) == (B, h_kv, n, d_v):
            fail(
                f"your `{NAME}` returned shape {tuple(out.shape)} for {where}: one output per key/value head. "
                f"Every one of the h = {h} query heads has its own output: repeat K and V for the query heads "
                "(your repeat_kv) before attending."
            )
        if causal and isinstance(out, torch.Tensor) and tuple(out.shape) == (B, h, n, d_v) and _inverted(out, Q, K, V):
            fail(
                f"your `{NAME}`'s causal mask is inverted for {where}: `scores.masked_fill(mask, -inf)` hides the "
                "keys where `mask` is True, and your mask is True where query i MAY see key j (j ≤ i + m − n), so "
                "each query sees only the keys it must not"
                + (", and with one query no key at all: its weights are 0 / 0, NaN" if n == 1 else "")
                + ". Hide the complement: `scores.masked_fill(~allowed, float('-inf'))`."
            )
        out = expect_tensor(out, NAME, (B, h, n, d_v), what="output", where=where)
        if not close(out, _reference(Q, K, V, causal)):
            _diagnose(out, Q, K, V, causal, where)
    passed(
        NAME,
        "equal to F.scaled_dot_product_attention(..., enable_gqa=True) for grouped, multi-head and multi-query "
        "heads; causal aligned bottom-right when the queries are the last n of m positions",
    )
