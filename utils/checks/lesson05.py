"""Checks for lesson 05, dot-product attention: `softmax`, `dot_product_attention` and
`scaled_dot_product_attention`.

Also the small pieces the attention checks of lessons 06 and 07 share: unpacking the
`(out, weights)` pair, and hints for the classic errors of batched code.
"""

from __future__ import annotations

import math

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

TRANSPOSE_HINT = (
    "`.T` reverses *all* the dimensions of a batched tensor; to swap the last two, write "
    "`K.transpose(-2, -1)` (or `K.mT`)."
)
KEEPDIM_HINT = (
    "a reduction such as `.sum(dim)` or `.amax(dim)` drops that dimension; keep it with `keepdim=True` "
    "so that the result lines up with the scores."
)
MAX_HINT = "`tensor.max(dim=...)` returns a pair (values, indices): use `.amax(dim=..., keepdim=True)` or `.values`."
LINEAR_HINT = (
    "nn.Linear stores its weight as (out_features, in_features) and computes x Wᵀ: call the layer, "
    "`self.W_q(X)`, rather than multiplying by its `.weight`."
)
NO_TRANSPOSE_HINT = (
    "the shapes must chain: the scores are X (n, d) @ Xᵀ (d, n) -> (n, n), so the second X is the operand to "
    "transpose, `X @ X.transpose(-2, -1)` (or `X.mT`; `X @ X` does not chain); then out is "
    "weights (n, n) @ X (n, d) -> (n, d), with no transpose."
)
VIEW_HINT = (
    "after a transpose the tensor is no longer contiguous in memory, so `.view` refuses it: "
    "use `.reshape(...)` (or `.contiguous().view(...)`)."
)


def hint_for_error(error: CheckError, *, batched: bool = False) -> str:
    """A hint for the errors that batched attention code raises most often ("" if none fits)."""
    text = str(error)
    if "cannot be multiplied" in text and ".weight" in text:
        return LINEAR_HINT
    if "return_types.max" in text:
        return MAX_HINT
    if "view size is not compatible" in text:
        return VIEW_HINT
    if batched:
        return f"it works on a single sequence but fails on a batch. {TRANSPOSE_HINT}"
    if "must match the size" in text:
        return KEEPDIM_HINT
    return ""


def call_with_hint(fn, name: str, inputs: dict, *, batched: bool = False, shapes: str = "", **keywords):
    """`call`, adding a hint for the classic errors to the learner's exception (`shapes`: for a shape mismatch)."""
    __tracebackhide__ = True
    try:
        return call(fn, name, inputs, **keywords)
    except CheckError as error:
        hint = hint_for_error(error, batched=batched)
        if shapes and not batched and hint in ("", KEEPDIM_HINT) and "cannot be multiplied" in str(error):
            hint = shapes
        if not hint or "not written yet" in str(error) or "in place" in str(error):
            raise
        raise CheckError(f"{error}\n  Hint: {hint}") from None


def expect_pair(result, name: str, out_shape: tuple, weights_shape: tuple, where: str):
    """The learner returned `(out, weights)` with the right shapes, in that order."""
    __tracebackhide__ = True
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        what = "a single tensor" if isinstance(result, torch.Tensor) else f"{type(result).__name__}"
        if result is None:
            fail(f"your `{name}` returned None for {where}: did you forget `return out, weights`?")
        fail(
            f"your `{name}` returned {what} for {where}; attention returns a pair: `return out, weights` "
            "(the output and the attention weights, so that we can plot them)."
        )
    out, weights = result
    if (
        isinstance(out, torch.Tensor)
        and isinstance(weights, torch.Tensor)
        and tuple(out.shape) == tuple(weights_shape)
        and tuple(weights.shape) == tuple(out_shape)
        and tuple(out_shape) != tuple(weights_shape)
    ):
        fail(
            f"your `{name}` returned (weights, out) for {where}; return them the other way round: `return out, weights`."
        )
    out = expect_tensor(out, name, out_shape, what="weighted average `out`", where=where)
    weights = expect_tensor(weights, name, weights_shape, what="weight matrix", where=where)
    return out, weights


def diagnose_weights(weights: torch.Tensor, name: str, where: str, suspects) -> None:
    """If `weights` is one of the classic wrong answers in `suspects` (message -> tensor, or such pairs), say which."""
    __tracebackhide__ = True
    for message, suspect in suspects.items() if isinstance(suspects, dict) else suspects:
        if suspect is not None and close(weights, suspect):
            fail(f"your `{name}` is wrong for {where}: {message}")


def expect_rows_sum_to_one(weights: torch.Tensor, name: str, where: str, hint: str = "") -> None:
    """Every row of attention weights (over the last dim) sums to 1."""
    __tracebackhide__ = True
    sums = weights.detach().sum(dim=-1)
    bad = (sums - 1).abs() > 1e-4
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        row = index[0] if len(index) == 1 else index
        message = f"row {row} of your weights sums to {float(sums[index]):.4g} for {where}, not 1"
        columns = weights.detach().sum(dim=-2)
        if ((columns - 1).abs() < 1e-4).all():
            fail(
                f"{message}: your *columns* sum to 1, so the softmax ran over the queries; run it over the keys, `dim=-1`."
            )
        fail(f"{message}. {hint}." if hint else f"{message}.")


# --- softmax -----------------------------------------------------------------------------------------


def _softmax_suspects(scores: torch.Tensor, dim: int) -> dict:
    """The classic wrong softmaxes of `scores` along `dim`, by the message that names them."""
    suspects = {
        "you forgot to divide by the sum: the exponentials must be normalised so that they sum to 1.": torch.exp(
            scores - scores.amax(dim=dim, keepdim=True)
        ),
        "you normalised the scores themselves; take the exponential first, then divide by the sum.": scores
        / scores.sum(dim=dim, keepdim=True),
    }
    if scores.dim() > 1:
        other = 0 if dim in (-1, scores.dim() - 1) else -1
        shifted = scores - scores.amax(dim=other, keepdim=True)
        suspects[
            f"you subtracted the max taken along dim={other}; subtract the max along the softmax's own dim, with "
            "keepdim=True (any shift along another dim changes the answer)."
        ] = torch.exp(shifted) / torch.exp(shifted).sum(dim=dim, keepdim=True)
        if other == -1:
            suspects[
                f"it normalised along the last dim, not along dim={dim}: did it ignore its `dim` argument? "
                "Use `dim` in the max and in the sum."
            ] = F.softmax(scores, dim=-1)
        else:
            suspects[f"your weights sum to 1 along dim={other}, not along dim={dim}: normalise along `dim`."] = (
                F.softmax(scores, dim=other)
            )
        if scores.shape[-1] == scores.shape[-2] and dim in (-1, scores.dim() - 1):  # square: no error to warn
            row_max = scores.amax(dim=-1, keepdim=True)  # (..., n, 1)
            lined_up = torch.exp(scores - row_max)  # right
            crossed = torch.exp(scores - row_max.mT)  # the max of row j subtracted from column j
            suspects[f"the max of each row was subtracted from a column; {KEEPDIM_HINT}"] = crossed / crossed.sum(
                dim=-1, keepdim=True
            )
            suspects[f"each row was divided by another row's sum; {KEEPDIM_HINT}"] = (
                lined_up / lined_up.sum(dim=-1)[..., None, :]
            )
    return suspects


def _check_softmax_on(softmax, scores: torch.Tensor, dim: int | None, case: str = "") -> None:
    __tracebackhide__ = True
    keywords = {} if dim is None else {"dim": dim}
    dim = -1 if dim is None else dim
    inputs = {"scores": scores}
    where = describe({**inputs, **keywords})
    result = call_with_hint(softmax, "softmax", inputs, **keywords)
    if isinstance(result, torch.Tensor) and result.is_floating_point() and not torch.isfinite(result).all():
        if case == "large":
            fail(
                f"your `softmax` gives NaN or infinity for scores around {float(scores.mean()):+.0f} ({where}): "
                "exp(1000) overflows to infinity (inf / inf is NaN) and exp(-1000) underflows to 0 (0 / 0 is NaN). Subtract the largest score of each row before the exponential, "
                "`scores - scores.amax(dim=dim, keepdim=True)`: the weights do not change, and every exponent is <= 0."
            )
        if case == "spread":
            fail(
                f"your `softmax` gives NaN for rows of very different sizes ({where}; one row near 0, one near 1000): "
                "you subtracted the max of the whole tensor, so the small rows' exponentials all underflow to 0 "
                "and 0 / 0 is NaN. Subtract each row's own max: `scores.amax(dim=dim, keepdim=True)`."
            )
        if case == "-inf":
            fail(
                f"your `softmax` gives NaN when a score is -inf ({where}): a score of -inf must get weight exactly 0 "
                "(the masks of lesson 08 rely on it). Subtract the row's max (a finite number), then exponentiate."
            )
    weights = expect_tensor(result, "softmax", tuple(scores.shape), what="weight matrix", where=where)
    expected = F.softmax(scores, dim=dim)
    if close(weights, expected):
        return
    diagnose_weights(weights, "softmax", where, _softmax_suspects(scores, dim))
    expect_close(
        weights,
        expected,
        "softmax",
        what="weight matrix",
        where=where,
        hint="softmax(s)_j = exp(s_j - max(s)) / sum_k exp(s_k - max(s)), along `dim`.",
    )


def check_softmax(softmax) -> None:
    """`softmax(scores, dim=-1)`: equal to `F.softmax`, along any dim, and stable for huge scores."""
    __tracebackhide__ = True
    require_function(softmax, "softmax")
    rng = generator(5)
    for shape in ((5,), (3, 4), (4, 4), (2, 3, 6)):
        _check_softmax_on(softmax, 2 * torch.randn(shape, generator=rng), None)
    scores = 2 * torch.randn(3, 4, 5, generator=rng)
    for dim in (0, 1, 2, -2):
        _check_softmax_on(softmax, scores, dim)
    large = 1000 + 3 * torch.randn(4, 6, generator=rng)
    _check_softmax_on(softmax, large, None, case="large")
    _check_softmax_on(softmax, -large, None, case="large")
    spread = torch.stack([torch.randn(6, generator=rng), 1000 + torch.randn(6, generator=rng)])
    _check_softmax_on(softmax, spread, None, case="spread")
    masked = torch.randn(3, 5, generator=rng)
    masked[:, 1] = float("-inf")
    _check_softmax_on(softmax, masked, None, case="-inf")
    passed("softmax", "equals F.softmax along every dim, and stays finite for scores of ±1000 and -inf")


# --- dot-product attention ---------------------------------------------------------------------------


def check_dot_product_attention(dot_product_attention) -> None:
    """`dot_product_attention(X (..., n, d)) -> (out, weights)`: `softmax(X Xᵀ) X`, compared with SDPA at scale 1."""
    __tracebackhide__ = True
    name = "dot_product_attention"
    require_function(dot_product_attention, name)
    check_earlier_first(dot_product_attention, name, "softmax", check_softmax, "exercise 1")
    rng = generator(6)
    shapes = ((4, 3), (6, 8), (5, 5), (2, 5, 4), (3, 3, 3), (3, 2, 4, 6))
    for shape in shapes:
        X = 0.8 * torch.randn(shape, generator=rng)
        n, d = shape[-2], shape[-1]
        inputs = {"X": X}
        where = describe(inputs)
        result = call_with_hint(dot_product_attention, name, inputs, batched=len(shape) > 2, shapes=NO_TRANSPOSE_HINT)
        out, weights = expect_pair(result, name, tuple(shape), (*shape[:-1], n), where)
        scores = X @ X.mT  # (..., n, n)
        expected_weights = F.softmax(scores, dim=-1)
        if not close(weights, expected_weights):
            suspects = {
                "you divided the scores by √d; this first version is not scaled: softmax(X Xᵀ) X. "
                "(Scaling comes in exercise 3.)": F.softmax(scores / math.sqrt(d), dim=-1),
                "your weights are the raw scores X Xᵀ: turn them into weights with your `softmax`.": scores,
            }
            if len(shape) == 3 and shape[0] == shape[2]:
                suspects[f"{TRANSPOSE_HINT} (You multiplied by X.T, which reversed the batch too.)"] = F.softmax(
                    X @ X.permute(2, 1, 0), dim=-1
                )
            diagnose_weights(weights, name, where, suspects)
            expect_rows_sum_to_one(weights, name, where, hint="Apply the softmax over the keys, `dim=-1`")
            expect_close(
                weights, expected_weights, name, what="weight matrix", where=where, hint="weights = softmax(X Xᵀ)."
            )
        expected_out = F.scaled_dot_product_attention(X, X, X, scale=1.0)  # (..., n, d)
        if not close(out, expected_out):
            hint = "out = weights @ X: row i is the weighted average of the rows of X."
            if close(out, weights.mT @ X):
                hint = "you multiplied by the transposed weights; out = weights @ X (row i of the weights mixes the rows of X)."
            expect_close(out, expected_out, name, what="output", where=where, hint=hint)
    passed(name, f"equals softmax(X Xᵀ) X and F.scaled_dot_product_attention(X, X, X, scale=1) on {len(shapes)} shapes")


def check_scaled_dot_product_attention(scaled_dot_product_attention) -> None:
    """`scaled_dot_product_attention(Q, K, V) -> (out, weights)`, compared with `F.scaled_dot_product_attention`."""
    __tracebackhide__ = True
    name = "scaled_dot_product_attention"
    require_function(scaled_dot_product_attention, name)
    check_earlier_first(scaled_dot_product_attention, name, "softmax", check_softmax, "exercise 1")
    rng = generator(7)
    # (batch, n, m, d_k, d_v): n != m, d_k != d_v, so that every mix-up shows
    cases = (((), 3, 5, 4, 2), ((), 4, 4, 9, 9), ((2,), 6, 4, 16, 3), ((2, 3), 5, 7, 8, 6))
    for batch, n, m, d_k, d_v in cases:
        Q = torch.randn(*batch, n, d_k, generator=rng)
        K = torch.randn(*batch, m, d_k, generator=rng)
        V = torch.randn(*batch, m, d_v, generator=rng)
        inputs = {"Q": Q, "K": K, "V": V}
        where = describe(inputs)
        shapes = (
            f"the shapes must chain: the scores are Q (n, d_k) @ Kᵀ (d_k, m) -> (n, m) = {(n, m)}, so K is the "
            "operand to transpose, `Q @ K.transpose(-2, -1)` (`Q @ K` does not chain); "
            "then weights @ V is (n, m) @ (m, d_v) -> (n, d_v). Scores are Q Kᵀ, not K Qᵀ."
        )
        result = call_with_hint(scaled_dot_product_attention, name, inputs, batched=bool(batch), shapes=shapes)
        if isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], torch.Tensor):
            if tuple(result[1].shape) == (*batch, m, n) and n != m:
                fail(
                    f"your weights have shape {tuple(result[1].shape)} for {where}, one row per key; expected "
                    f"{(*batch, n, m)}, one row per query: the scores are Q Kᵀ, not K Qᵀ."
                )
            if isinstance(result[0], torch.Tensor) and tuple(result[0].shape) == (*batch, n, d_k) and d_k != d_v:
                fail(
                    f"your output has shape {tuple(result[0].shape)} for {where}, the width of the keys; "
                    f"expected {(*batch, n, d_v)}: the weights average the values, `weights @ V`."
                )
        out, weights = expect_pair(result, name, (*batch, n, d_v), (*batch, n, m), where)
        scores = Q @ K.mT  # (..., n, m)
        expected_weights = F.softmax(scores / math.sqrt(d_k), dim=-1)
        if not close(weights, expected_weights):
            suspects = {
                "you did not divide the scores by √d_k: weights = softmax(Q Kᵀ / √d_k).": F.softmax(scores, dim=-1),
                "you divided the scores by d_k; divide by its square root, √d_k.": F.softmax(scores / d_k, dim=-1),
                "you multiplied the scores by √d_k; divide by it.": F.softmax(scores * math.sqrt(d_k), dim=-1),
                "you divided by √d_v, the width of the values; the scale is √d_k, the width of the queries and keys "
                "(`Q.shape[-1]`).": F.softmax(scores / math.sqrt(d_v), dim=-1) if d_v != d_k else None,
                "you divided by √n, the number of queries: d_k is the *last* dim of Q, `Q.shape[-1]` "
                "(`Q.shape[1]` is n once there is a batch).": F.softmax(scores / math.sqrt(n), dim=-1)
                if n != d_k
                else None,
                "you divided by √m, the number of keys: d_k is the *last* dim of K, `K.shape[-1]` "
                "(`K.shape[1]` is m once there is a batch).": F.softmax(scores / math.sqrt(m), dim=-1)
                if m not in (d_k, n)
                else None,
            }
            diagnose_weights(weights, name, where, suspects)
            expect_rows_sum_to_one(weights, name, where, hint="Apply the softmax over the keys, `dim=-1`")
            expect_close(
                weights,
                expected_weights,
                name,
                what="weight matrix",
                where=where,
                hint="weights = softmax(Q Kᵀ / √d_k).",
            )
        expected_out = F.scaled_dot_product_attention(Q, K, V)  # (..., n, d_v)
        if not close(out, expected_out):
            hint = "out = weights @ V: each query's weighted average of the values."
            expect_close(out, expected_out, name, what="output", where=where, hint=hint)
    passed(name, f"equals F.scaled_dot_product_attention on {len(cases)} shapes (batched, n ≠ m, d_k ≠ d_v)")
