"""Checks for lesson 15, attention as a program: `alibi_score_mod`, `document_mask_mod`,
`RollingKVCache` and `latent_attention`.

A `score_mod` or `mask_mod` is called the way FlexAttention's eager mode sees it, on every
(batch, head, query, key) at once: the indices are int32 tensors shaped to broadcast against
each other, `b (B, 1, 1, 1)`, `h (1, H, 1, 1)`, `q_idx (1, 1, n, 1)`, `kv_idx (1, 1, 1, m)`. Code
that works there (tensor operations, no Python `if` on a tensor, no Python list indexed by a
tensor) also works inside `flex_attention`. The references are written from the definitions:
Press et al.'s slopes, `F.scaled_dot_product_attention` in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.checks import _harness
from utils.checks._harness import (
    CheckError,
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
from utils.checks.lesson12 import expect_nothing_changed

TIME_LIMIT = _harness.TIME_LIMIT  # seconds per call of the learner's code (a test may lower it)


def _call(fn, name: str, inputs: dict, **keywords):
    __tracebackhide__ = True
    return _harness.call(fn, name, inputs, time_limit=TIME_LIMIT, **keywords)


def _grid(B: int, H: int, n: int, m: int) -> dict:
    """FlexAttention's indices for every (b, h, q, kv) at once; the n queries are the last n of m positions."""
    index = torch.int32
    return {
        "b": torch.arange(B, dtype=index).view(B, 1, 1, 1),
        "h": torch.arange(H, dtype=index).view(1, H, 1, 1),
        "q_idx": torch.arange(m - n, m, dtype=index).view(1, 1, n, 1),
        "kv_idx": torch.arange(m, dtype=index).view(1, 1, 1, m),
    }


def _expect_function(value, name: str, kind: str, where: str, signature: str):
    """The factory returned a function (the mod), not its result or nothing."""
    __tracebackhide__ = True
    if value is None:
        fail(f"your `{name}` returned None for {where}: define `{kind}` inside it and end with `return {kind}`.")
    if not callable(value):
        fail(
            f"your `{name}` returned {shape_of(value)} for {where}; it should return a function, "
            f"`{kind}{signature}`, defined inside it: write `return {kind}`, without brackets."
        )
    return value


def _broadcast(value: torch.Tensor, shape: tuple, name: str, what: str, where: str) -> torch.Tensor:
    """`value` spread over every (b, h, q, kv), or a message if it cannot be."""
    __tracebackhide__ = True
    try:
        return value.expand(shape)
    except RuntimeError:
        fail(
            f"your {what} returned shape {tuple(value.shape)} for {where}, which does not fit the {shape} pairs of "
            f"(b, h, q_idx, kv_idx) it was asked about: compute it with tensor operations on the arguments, "
            f"elementwise (`torch.where`, `&`, arithmetic), so that it has one value per pair."
        )


# ----------------------------------------------------------------------------------------------
# alibi_score_mod

ALIBI = "alibi_score_mod"
ALIBI_MOD = "score_mod (the function your alibi_score_mod returns)"


def reference_slopes(num_heads: int) -> list[float]:
    """Press et al.'s slopes: 2^(-8(h+1)/H) for H a power of two; otherwise their reference code's
    rule: the slopes of the power of two below H, then every other slope of twice that power."""
    if math.log2(num_heads).is_integer():
        return [2 ** (-8 * (h + 1) / num_heads) for h in range(num_heads)]
    lower = 2 ** math.floor(math.log2(num_heads))
    return reference_slopes(lower) + reference_slopes(2 * lower)[0::2][: num_heads - lower]


TENSOR_HINT = (
    "\n  FlexAttention calls your function on tensors, every pair at once (here, index tensors that broadcast "
    "against each other): use tensor operations only. Keep numbers you look up in a tensor (`torch.tensor(...)`, "
    "indexed by the tensor `h`), not a Python list, and combine conditions with `&`, `|` and `torch.where`, not "
    "`if`, `and`, `or`."
)
TENSOR_ERRORS = ("Boolean value of Tensor", "converted to an index", "only one element tensors", "list indices")


def _call_mod(mod, name: str, inputs: dict):
    """Call a score_mod or mask_mod on index tensors; an error typical of Python-only code gets a hint."""
    __tracebackhide__ = True
    try:
        return _call(mod, name, inputs)
    except CheckError as error:
        if any(text in str(error) for text in TENSOR_ERRORS):
            raise CheckError(f"{error}{TENSOR_HINT}") from None
        raise


def _alibi_out(score_mod, H: int, score: torch.Tensor, grid: dict, where: str) -> torch.Tensor:
    __tracebackhide__ = True
    out = _call_mod(score_mod, ALIBI_MOD, {"score": score, **grid})
    out = expect_tensor(out, ALIBI_MOD, what="modified scores", where=where)
    return _broadcast(out, tuple(score.shape), ALIBI_MOD, "score_mod", where)


def _slopes_found(bias: torch.Tensor, distance: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The slope of each head that best explains `bias = -slope · distance` on the allowed pairs (least squares)."""
    d = (distance * allowed).double()  # (B, H, n, m): the distance on the allowed pairs, 0 elsewhere
    return -(bias.double() * d).sum(dim=(0, 2, 3)) / (d * d).sum(dim=(0, 2, 3)).clamp_min(1e-12)  # (H,)


def _fmt_slopes(slopes) -> str:
    return "[" + ", ".join(f"{float(s):.4g}" for s in slopes) + "]"


def _check_alibi_heads(alibi_score_mod, H: int, rng: torch.Generator, B: int = 2, n: int = 5, m: int = 7) -> None:
    __tracebackhide__ = True
    where = f"num_heads = {H}"
    score_mod = _expect_function(
        _call(alibi_score_mod, ALIBI, {"num_heads": H}), ALIBI, "score_mod", where, "(score, b, h, q_idx, kv_idx)"
    )
    grid = _grid(B, H, n, m)
    where = f"num_heads = {H}, scores of shape {(B, H, n, m)} (queries at positions {m - n}..{m - 1})"
    distance = grid["q_idx"] - grid["kv_idx"]  # (1, 1, n, m): q - kv
    allowed = (distance >= 0).expand(B, H, n, m)  # the causal pairs: above the diagonal is masked anyway
    slopes = torch.tensor(reference_slopes(H)).view(1, H, 1, 1)
    first, second = (torch.randn(B, H, n, m, generator=rng) for _ in range(2))
    out = _alibi_out(score_mod, H, first, grid, where)
    expected = first - slopes * distance  # (B, H, n, m)
    if close(out[allowed], expected[allowed]):
        return
    bias = out - first
    if close(out[allowed], (-slopes * distance).expand(B, H, n, m)[allowed]):
        fail(
            f"your score_mod returns the bias alone for {where}, not the score plus the bias: the score "
            "(q·k/√d) is thrown away. Return `score - slope * (q_idx - kv_idx)`."
        )
    other = _alibi_out(score_mod, H, second, grid, where)
    if not close((other - second)[allowed], bias[allowed], atol=1e-4):
        fail(
            f"what your score_mod adds to a score depends on the score itself ({where}): ALiBi adds a bias that "
            "depends only on the head and the distance, `score - slope[h] * (q_idx - kv_idx)` (added, not multiplied)."
        )
    if close(bias[allowed], torch.zeros_like(bias)[allowed]):
        fail(f"your score_mod returns the scores unchanged for {where}: add −m_h·(q_idx − kv_idx).")
    found = _slopes_found(bias, distance, allowed)  # (H,)
    fitted = -found.view(1, H, 1, 1) * distance
    if not close(bias[allowed], fitted.expand(B, H, n, m)[allowed].to(bias.dtype), atol=1e-4):
        i = tuple(int(v) for v in (~torch.isclose(bias, expected - first, atol=1e-4) & allowed).nonzero()[0])
        fail(
            f"your score_mod's bias is not a slope times the distance ({where}): at (b, h, q, kv) = {i}, with "
            f"q_idx − kv_idx = {int(distance[0, 0, i[2], i[3]])}, it adds {float(bias[i]):.4g}; ALiBi adds "
            f"−m_h·(q_idx − kv_idx) = {float((expected - first)[i]):.4g}."
        )
    right = torch.tensor(reference_slopes(H), dtype=torch.float64)
    if close(found, -right):
        fail(
            f"your score_mod adds +m_h·(q_idx − kv_idx) for {where}: a bonus for distance, so the farthest keys "
            "win. ALiBi penalises distance: subtract, `score - slope * (q_idx - kv_idx)`."
        )
    if H > 1 and close(found, found[:1].expand(H)):
        fail(
            f"every head of your score_mod has the same slope, {float(found[0]):.4g}, for {where}: the slopes are "
            f"per head, m_h = 2^(−8(h+1)/num_heads) = {_fmt_slopes(right)}: index them with the head, `slopes[h]`."
        )
    if H > 1 and close(found, right.flip(0)):
        fail(
            f"your slopes run the wrong way for {where}: {_fmt_slopes(found)}. Head 0 has the steepest, "
            f"m_0 = 2^(−8/num_heads), and they fall from there: {_fmt_slopes(right)}."
        )
    if close(found, torch.tensor([2 ** (-8 * h / H) for h in range(H)], dtype=torch.float64)):
        fail(
            f"your slopes are off by one head for {where}: {_fmt_slopes(found)} starts at 2^0 = 1. Press et al.'s "
            f"start at 2^(−8/num_heads): m_h = 2^(−8(h+1)/num_heads), h = 0 … num_heads − 1 = {_fmt_slopes(right)}."
        )
    if H != 8 and close(found, torch.tensor([2.0 ** -(h + 1) for h in range(H)], dtype=torch.float64)):
        fail(
            f"your slopes are 2^−(h+1) for {where}, which is right for 8 heads only: the ratio depends on the "
            f"number of heads, m_h = 2^(−8(h+1)/num_heads) = {_fmt_slopes(right)}."
        )
    fail(
        f"your slopes are {_fmt_slopes(found)} for {where}; Press et al.'s are a geometric sequence, "
        f"m_h = 2^(−8(h+1)/num_heads) = {_fmt_slopes(right)}."
    )


def check_alibi_score_mod(alibi_score_mod) -> None:
    """`alibi_score_mod(num_heads)` returns `score_mod(score, b, h, q_idx, kv_idx)` = score − m_h·(q_idx − kv_idx),
    m_h = 2^(−8(h+1)/num_heads); for a number of heads that is not a power of two, a ValueError or the
    reference code's slopes."""
    __tracebackhide__ = True
    require_function(alibi_score_mod, ALIBI)
    rng = generator(150)
    for H in (4, 1, 2, 8, 16):
        _check_alibi_heads(alibi_score_mod, H, rng)
    _check_alibi_heads(alibi_score_mod, 4, rng, B=1, n=6, m=6)  # a square map: every query, every key before it
    for H in (6, 12):
        try:
            made = _call(alibi_score_mod, ALIBI, {"num_heads": H})
        except CheckError as error:
            if "raised ValueError" in str(error):
                continue
            raise CheckError(
                f"{error}\n  For a number of heads that is not a power of two, raise a ValueError that says so "
                "(or follow Press et al.'s reference code)."
            ) from None
        try:
            _check_alibi_heads(lambda num_heads, made=made: made, H, rng)
        except CheckError as error:
            raise CheckError(
                f"num_heads = {H} is not a power of two, and Press et al. trained only such models. Either raise a "
                f"ValueError that says so, or follow their reference code (the slopes of {2 ** int(math.log2(H))} "
                f"heads, then every other slope of {2 ** (int(math.log2(H)) + 1)} heads: "
                f"{_fmt_slopes(reference_slopes(H))}).\n  What yours does: {error}"
            ) from None
    passed(ALIBI, "score − m_h·(q_idx − kv_idx), geometric slopes 2^(−8(h+1)/num_heads), one per head (1 to 16 heads)")


# ----------------------------------------------------------------------------------------------
# document_mask_mod

DOCUMENT = "document_mask_mod"
DOCUMENT_MOD = "mask_mod (the function your document_mask_mod returns)"


def check_document_mask_mod(document_mask_mod) -> None:
    """`document_mask_mod(document_ids (n,))` returns `mask_mod(b, h, q_idx, kv_idx)`: True where the query and the key
    are in the same document and kv_idx ≤ q_idx."""
    __tracebackhide__ = True
    require_function(document_mask_mod, DOCUMENT)
    cases = (
        [0, 0, 0, 1, 1, 2, 2, 2],  # three documents packed one after another
        [5, 5, 3, 3, 3, 9],  # document ids need not be sorted, nor start at 0
        [1, 1, 1, 1, 1],  # one document: the plain causal mask
        [0, 1, 2, 3],  # a document per token: each sees itself only
        [4, 2, 2, 2, 2, 2, 2, 7],
    )
    for number, ids in enumerate(cases):
        document_ids = torch.tensor(ids, dtype=torch.int32 if number == 1 else torch.long)
        before = document_ids.clone()
        where = f"document_ids = {ids}"
        mask_mod = _expect_function(
            _call(document_mask_mod, DOCUMENT, {"document_ids": document_ids}),
            DOCUMENT,
            "mask_mod",
            where,
            "(b, h, q_idx, kv_idx)",
        )
        n, B, H = len(ids), 2, 2
        grid = _grid(B, H, n, n)
        value = _call_mod(mask_mod, DOCUMENT_MOD, grid)
        value = expect_tensor(value, DOCUMENT_MOD, what="mask", where=where, floating=False)
        if value.dtype != torch.bool:
            fail(
                f"your mask_mod returned a tensor of dtype {value.dtype} for {where}; a mask_mod returns bool, True "
                "where the query may attend to the key (build it with comparisons, `==`, `>=`, and `&`)."
            )
        mask = _broadcast(value, (B, H, n, n), DOCUMENT_MOD, "mask_mod", where)
        if not torch.equal(document_ids, before):
            fail(f"your `{DOCUMENT}` or its mask_mod changed `document_ids` ({where}); leave it as it is.")
        q, kv = torch.arange(n)[:, None], torch.arange(n)[None, :]  # (n, 1), (1, n)
        same = document_ids.long()[:, None] == document_ids.long()[None, :]  # (n, n): same document
        expected = same & (kv <= q)  # (n, n)
        if not all(torch.equal(mask[b, h], mask[0, 0]) for b in range(B) for h in range(H)):
            fail(
                f"your mask_mod gives different masks for different batch rows or heads ({where}): documents "
                "are the same for every row and head, so use only q_idx and kv_idx (and document_ids)."
            )
        mask = mask[0, 0]  # (n, n)
        if torch.equal(mask, expected):
            continue
        hints = [
            (~expected, "it is the opposite meaning: True means *may attend*, as in F.scaled_dot_product_attention."),
            (
                same,
                "a query sees the whole of its document, the tokens after it too: the mask must also be causal, "
                "`kv_idx <= q_idx`.",
            ),
            (
                kv <= q,
                "it leaks across documents: a query sees the tokens before it in other documents too (that is "
                "only the causal mask). Packed documents must not see each other: require "
                "`document_ids[q_idx] == document_ids[kv_idx]` as well.",
            ),
            (
                same & (kv >= q),
                "the direction is reversed: a query sees the later tokens of its document and not the earlier ones.",
            ),
            (same & (kv < q), "a query may not see itself: keep the diagonal, `kv_idx <= q_idx`, not `<`."),
        ]
        for wrong, hint in hints:
            if torch.equal(mask, wrong):
                fail(f"your `{DOCUMENT}` is wrong for {where}: {hint}")
        i, j = (int(v) for v in (mask != expected).nonzero()[0])
        if mask[i, j] and not same[i, j]:
            fail(
                f"your mask lets query {i} (document {ids[i]}) see key {j} (document {ids[j]}) for {where}: it leaks "
                "across documents; a query sees only its own document."
            )
        if mask[i, j]:
            fail(f"your mask lets query {i} see key {j}, which comes after it, for {where}: the mask must be causal.")
        fail(
            f"your mask hides key {j} from query {i} for {where}, though both are in document {ids[i]} and "
            f"{j} ≤ {i}: within a document, a query sees itself and everything before it."
        )
    passed(DOCUMENT, "causal within each document, nothing across documents (5 packings)")


# ----------------------------------------------------------------------------------------------
# RollingKVCache

ROLLING = "RollingKVCache"


def _length(cache, when: str) -> int:
    __tracebackhide__ = True
    if not hasattr(type(cache), "__len__"):
        fail(
            f"your {ROLLING} has no `__len__`: define `def __len__(self)` that returns the number of positions it "
            "holds now."
        )
    try:
        return int(len(cache))
    except Exception as error:  # the learner's own error, in their terms
        fail(f"`len(cache)` raised {type(error).__name__}: {error}\n  {when}.")


def _positions(cache, where: str) -> torch.Tensor:
    __tracebackhide__ = True
    try:
        positions = cache.positions
    except AttributeError:
        fail(
            f"your {ROLLING} has no attribute `positions`: keep `self.positions`, the original index in the text "
            "of each position it holds (a 1-D tensor of ints, oldest first)."
        )
    if isinstance(positions, (list, tuple)) and all(isinstance(p, int) for p in positions):
        positions = torch.tensor(positions, dtype=torch.long)
    if not isinstance(positions, torch.Tensor):
        fail(f"`cache.positions` is {shape_of(positions)} {where}; it should be a 1-D tensor of ints.")
    if positions.is_floating_point() or positions.dim() != 1:
        fail(
            f"`cache.positions` is a tensor of dtype {positions.dtype} and shape {tuple(positions.shape)} {where}; "
            "it should be a 1-D tensor of ints (`torch.arange` makes them)."
        )
    return positions.long()


def _new_rolling(RollingKVCache, sinks: int, window: int):
    __tracebackhide__ = True
    cache = _call(RollingKVCache, ROLLING, {"sinks": sinks, "window": window})
    if not callable(getattr(cache, "update", None)):
        fail(f"your {ROLLING} has no method `update`: write `def update(self, k, v)` that returns (keys, values).")
    length = _length(cache, f"for a new, empty cache (sinks = {sinks}, window = {window}): return 0")
    if length != 0:
        fail(
            f"`len(cache)` is {length} for a new, empty cache; it should be 0 (if a cache made before this one "
            "was filled, two caches share their storage: create it in `__init__`, not in the class body)."
        )
    return cache


def _expect_kept(returned, given: list, kept: list[int], what: str, where: str, other: list, sinks: int, window: int):
    """`returned` is what was given, concatenated along time, at the kept positions only."""
    __tracebackhide__ = True
    whole = torch.cat(given, dim=2)  # (B, h_kv, T, ·): every position so far
    T = whole.shape[2]
    expected = whole[:, :, kept]
    if what == "keys":
        swapped = torch.cat(other, dim=2)[:, :, kept]
        if returned.shape == swapped.shape and close(returned, swapped, atol=0, rtol=0):
            fail(
                f"your `{ROLLING}.update` returned the values where the keys belong at {where}: return (keys, values)."
            )
    if returned.dtype != whole.dtype:
        fail(
            f"your `{ROLLING}.update` returned {what} of dtype {returned.dtype} for inputs of dtype {whole.dtype} at "
            f"{where}: keep the dtype of what you are given."
        )
    if returned.shape == expected.shape and close(returned, expected, atol=0, rtol=0):
        return

    def last(count: int, first: int = sinks) -> list[int]:
        return sorted(set(range(min(first, T))) | set(range(max(T - count, 0), T)))

    wrong = {
        "all": list(range(T)),
        "no sinks": last(sinks + window, first=0),
        "window + 1": last(window + 1),
        "window - 1": last(window - 1),
        "sinks + 1": last(window, first=sinks + 1),
        "sinks - 1": last(window, first=sinks - 1),
        "new": list(range(T - given[-1].shape[2], T)),
    }
    matches = {
        name for name, index in wrong.items() if index != kept and close(returned, whole[:, :, index], atol=0, rtol=0)
    }
    B, h_kv, _, width = whole.shape
    if "all" in matches:
        fail(
            f"your `{ROLLING}.update` keeps every position at {where}: T = {T} positions seen, and it should hold "
            f"only the first sinks = {sinks} and the last window = {window} ({len(kept)} positions: {kept})."
        )
    if "no sinks" in matches and sinks:
        fail(
            f"your `{ROLLING}` evicted the sinks at {where}: it holds the last sinks + window = {sinks + window} "
            f"positions. The first sinks = {sinks} positions (0 … {sinks - 1}) must stay forever, beside the last "
            f"window = {window}: positions {kept}."
        )
    for name, words in (("window + 1", "window + 1"), ("window - 1", "window − 1")):
        if name in matches:
            fail(
                f"your `{ROLLING}` keeps the last {words} positions at {where}: window = {window} means the newest "
                f"{window}, the one just added included: positions ≥ T − window = {T - window} (T = {T} seen). "
                f"Expected positions {kept}."
            )
    for name, words in (("sinks + 1", "sinks + 1"), ("sinks - 1", "sinks − 1")):
        if name in matches:
            fail(
                f"your `{ROLLING}` keeps the first {words} positions as sinks at {where}: sinks = {sinks} means "
                f"positions 0 … {sinks - 1}. Expected positions {kept}."
            )
    if "new" in matches:
        fail(
            f"your `{ROLLING}.update` returned only this step's {what} at {where}; return every {what[:-1]} the "
            f"cache holds: the sinks and the window, positions {kept}."
        )
    if returned.shape == expected.shape and len(kept) > 1 and close(returned, expected.flip(2), atol=0, rtol=0):
        fail(
            f"your `{ROLLING}.update` returned {what} newest first at {where}: keep the order of the text, oldest first."
        )
    if tuple(returned.shape) != tuple(expected.shape):
        fail(
            f"your `{ROLLING}.update` returned {what} of shape {tuple(returned.shape)} at {where}; expected "
            f"{(B, h_kv, len(kept), width)}: the positions {kept} (the first sinks = {sinks} and the last "
            f"window = {window} of the T = {T} seen), along dim 2."
        )
    expect_close(returned, expected, f"{ROLLING}.update", what=what, where=where, atol=0, rtol=0)


def _rolling_session(RollingKVCache, sinks: int, window: int, steps: list[int], dtype, seed: int):
    """Fill one cache; check each return, len and positions, and that nothing given or returned ever changes."""
    __tracebackhide__ = True
    rng = generator(seed)
    B, h_kv, d, d_v = 2, 2, 3, 4
    cache = _new_rolling(RollingKVCache, sinks, window)
    given_k, given_v, kept_inputs, kept_returns = [], [], [], []
    for step, t in enumerate(steps, start=1):
        k = torch.randn(B, h_kv, t, d, generator=rng, dtype=torch.float64).to(dtype)
        v = torch.randn(B, h_kv, t, d_v, generator=rng, dtype=torch.float64).to(dtype)
        kept_inputs.append((k, k.clone(), v, v.clone()))
        where = f"update {step} (sinks = {sinks}, window = {window}; k of shape {tuple(k.shape)})"
        result = _call(cache.update, f"{ROLLING}.update", {"k": k, "v": v})
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            if result is None:
                fail(f"your `{ROLLING}.update` returned None at {where}: did you forget `return keys, values`?")
            fail(f"your `{ROLLING}.update` returned {shape_of(result)} at {where}; it should return (keys, values).")
        keys = expect_tensor(result[0], f"{ROLLING}.update", what="keys (the first of the pair)", where=where)
        values = expect_tensor(result[1], f"{ROLLING}.update", what="values (the second of the pair)", where=where)
        given_k.append(k.clone())
        given_v.append(v.clone())
        T = sum(steps[:step])
        kept = [i for i in range(T) if i < sinks or i >= T - window]
        _expect_kept(keys, given_k, kept, "keys", where, given_v, sinks, window)
        _expect_kept(values, given_v, kept, "values", where, given_k, sinks, window)
        length = _length(cache, f"after {where}")
        if length != len(kept):
            if length == T:
                fail(
                    f"`len(cache)` is {length} after {where}: the number of positions seen. It should be the "
                    f"number held now, {len(kept)} (the sinks and the window)."
                )
            fail(f"`len(cache)` is {length} after {where}; the cache holds {len(kept)} positions: {kept}.")
        positions = _positions(cache, f"after {where}")
        if positions.tolist() != kept:
            if positions.tolist() == list(range(len(kept))) and kept != list(range(len(kept))):
                fail(
                    f"`cache.positions` is {positions.tolist()} after {where}: the slots in the cache. It should "
                    f"hold each kept position's index in the text, {kept}, so that a score_mod can see how far "
                    "back each key is."
                )
            fail(f"`cache.positions` is {positions.tolist()} after {where}; the positions held are {kept}.")
        expect_nothing_changed(ROLLING, kept_inputs, kept_returns, step)
        kept_returns.append((keys.detach().clone(), values.detach().clone(), keys, values))
    return cache


def check_rolling_kv_cache(RollingKVCache) -> None:
    """`RollingKVCache(sinks, window)`; `update(k, v)` appends along time and returns the keys and values of the first
    `sinks` and the last `window` positions seen; `len(cache)` counts them; `cache.positions` holds their original
    indices; nothing given or returned ever changes."""
    __tracebackhide__ = True
    require_function(RollingKVCache, ROLLING, kind="class")
    sessions = (  # sinks, window, the length of each update
        (2, 3, [4, 1, 5, 1, 1]),  # a prompt, then a chunk longer than the window: first, as it tells mistakes apart
        (2, 3, [1, 1, 1, 1, 1, 1, 1, 1]),  # one position at a time, well past sinks + window
        (0, 4, [3, 1, 1, 1, 2]),  # no sinks: a plain sliding window
        (3, 2, [2, 2, 2, 1]),
        (4, 8, [3, 1, 1]),  # never full: nothing to evict yet
    )
    first = None
    for number, (sinks, window, steps) in enumerate(sessions):
        dtype = torch.float64 if number == 3 else torch.float32
        cache = _rolling_session(RollingKVCache, sinks, window, steps, dtype, seed=151 + number)
        if first is None:
            first, held = cache, len(cache)
    if len(first) != held:
        fail(
            f"`len(cache)` of one {ROLLING} went from {held} to {len(first)} when other caches were filled: two "
            "caches share their storage. Create it in `__init__`, not as a class attribute."
        )
    passed(
        ROLLING,
        "keeps the first `sinks` and the last `window` positions, oldest first, with their positions in the text; "
        "len = what it holds; never changes what it was given or returned",
    )


# ----------------------------------------------------------------------------------------------
# latent_attention

LATENT = "latent_attention"


def _latent_reference(x, W_dkv, W_uk, W_uv, W_q, W_o, h, causal, *, scale=None, split="heads") -> torch.Tensor:
    """Multi-head attention on keys and values rebuilt from the latent, in float64."""
    x, W_dkv, W_uk, W_uv, W_q, W_o = (t.double() for t in (x, W_dkv, W_uk, W_uv, W_q, W_o))
    B, T, _ = x.shape
    c = x @ W_dkv  # (B, T, d_c)

    def by_head(y):  # (B, T, h * w) -> (B, h, T, w), or the classic mistake
        return y.reshape(B, h, T, -1) if split == "no transpose" else y.view(B, T, h, -1).transpose(1, 2)

    q, k, v = by_head(x @ W_q), by_head(c @ W_uk), by_head(c @ W_uv)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)  # (B, h, T, d_v)
    return out.transpose(1, 2).reshape(B, T, -1) @ W_o  # (B, T, D)


def check_latent_attention(latent_attention) -> None:
    """`latent_attention(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True)` → `(out (B, T, D), c (B, T, d_c))`:
    c = x W_dkv, keys c W_uk and values c W_uv split into heads, queries x W_q, attention scaled by √d_k, heads merged
    and projected by W_o."""
    __tracebackhide__ = True
    require_function(latent_attention, LATENT)
    rng = generator(156)
    cases = (  # B, T, D, d_c, h, d_k, d_v, causal
        (2, 5, 8, 3, 2, 4, 3, True),
        (1, 6, 12, 4, 3, 4, 5, False),
        (2, 4, 8, 8, 4, 2, 2, True),  # d_c = D: a full-rank latent
        (1, 1, 6, 2, 2, 3, 4, True),  # one position
        (1, 7, 10, 5, 2, 6, 3, True),
    )
    for B, T, D, d_c, h, d_k, d_v, causal in cases:
        x = torch.randn(B, T, D, generator=rng)
        W_dkv = torch.randn(D, d_c, generator=rng) / math.sqrt(D)
        W_uk = torch.randn(d_c, h * d_k, generator=rng) / math.sqrt(d_c)
        W_uv = torch.randn(d_c, h * d_v, generator=rng) / math.sqrt(d_c)
        W_q = torch.randn(D, h * d_k, generator=rng) / math.sqrt(D)
        W_o = torch.randn(h * d_v, D, generator=rng) / math.sqrt(h * d_v)
        inputs = {"x": x, "W_dkv": W_dkv, "W_uk": W_uk, "W_uv": W_uv, "W_q": W_q, "W_o": W_o, "num_heads": h}
        where = describe({**inputs, "causal": causal})
        result = _call(latent_attention, LATENT, inputs, causal=causal)
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            fail(
                f"your `{LATENT}` returned {shape_of(result)} for {where}; return the pair (out, c): the output and "
                "the latent, which is all a cache keeps."
            )
        out, c = result
        if isinstance(c, torch.Tensor) and c.shape != (B, T, d_c):
            latent = (x @ W_dkv).double()
            for name, up, width in (("keys", W_uk, d_k), ("values", W_uv, d_v)):
                full = latent @ up.double()  # (B, T, h * width)
                split = full.view(B, T, h, width).transpose(1, 2)  # (B, h, T, width)
                if close(c, full) or close(c, split):
                    fail(
                        f"the `c` your `{LATENT}` returns is the {name} (c W_{'uk' if name == 'keys' else 'uv'}), "
                        f"for {where}: a cache of them holds h·d = {h * width} numbers per position, not the "
                        f"latent's d_c = {d_c}. Return the latent itself, `c = x @ W_dkv` (B, T, d_c), and rebuild "
                        "keys and values from it inside the function."
                    )
        c = expect_tensor(c, LATENT, (B, T, d_c), what="latent c (the second of the pair)", where=where)
        expect_close(c, x @ W_dkv, LATENT, what="latent c", where=where, hint="c is the down-projection, `x @ W_dkv`.")
        if isinstance(out, torch.Tensor) and out.shape == (B, T, h * d_v) and h * d_v != D:
            fail(
                f"your `{LATENT}` returned an output of shape {tuple(out.shape)} for {where}: the heads merged but "
                f"not projected back to the model's width D = {D}. Multiply by W_o last."
            )
        out = expect_tensor(out, LATENT, (B, T, D), what="output (the first of the pair)", where=where)
        reference = _latent_reference(x, W_dkv, W_uk, W_uv, W_q, W_o, h, causal)
        if close(out, reference):
            continue
        if T > 1 and close(out, _latent_reference(x, W_dkv, W_uk, W_uv, W_q, W_o, h, not causal)):
            if causal:
                fail(
                    f"with causal=True your `{LATENT}` lets every query see every key ({where}): query i must see "
                    "only keys j ≤ i (`is_causal=causal`, or mask the scores above the diagonal with −inf)."
                )
            fail(
                f"with causal=False your `{LATENT}` still hides the keys after each query ({where}): mask only when "
                "`causal` is True."
            )
        scales = {
            "d_c": (d_c, "the latent's width d_c"),
            "D": (D, "the model's width D"),
            "d_v": (d_v, "the values' width d_v"),
        }
        for name, (width, words) in scales.items():
            if width != d_k and close(
                out, _latent_reference(x, W_dkv, W_uk, W_uv, W_q, W_o, h, causal, scale=1 / math.sqrt(width))
            ):
                fail(
                    f"your `{LATENT}` scales the scores by √{name} for {where}, {words}; scale by √d_k, the width "
                    f"of one head's queries and keys (d_k = {d_k})."
                )
        if close(out, _latent_reference(x, W_dkv, W_uk, W_uv, W_q, W_o, h, causal, scale=1.0)):
            fail(f"your `{LATENT}` does not scale the scores for {where}: divide Q Kᵀ by √d_k (d_k = {d_k}).")
        if h > 1 and close(out, _latent_reference(x, W_dkv, W_uk, W_uv, W_q, W_o, h, causal, split="no transpose")):
            fail(
                f"your `{LATENT}` splits the heads with a reshape straight to (B, h, T, d) for {where}, which mixes "
                "positions and heads: reshape to (B, T, h, d) first, then swap T and h (`.transpose(1, 2)`), as "
                "lesson 07's split_heads does."
            )
        expect_close(
            out,
            reference,
            LATENT,
            what="output",
            where=where,
            hint="c = x W_dkv; K = c W_uk, V = c W_uv, Q = x W_q, each split into heads; softmax(Q Kᵀ / √d_k) V, "
            "heads merged, times W_o.",
        )
    passed(
        LATENT,
        "c = x W_dkv is all it returns to cache; keys and values rebuilt from c, equal to multi-head attention "
        "(causal or not, full-rank latent included)",
    )
