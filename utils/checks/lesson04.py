"""Checks for lesson 04, kernel regression: `gaussian_weights` and `nadaraya_watson`.

The reference is `torch.softmax` over the keys of −(q − k)² / (2σ²). Both checks also
make sure the learner's code keeps the gradient to σ (the lesson learns σ by gradient
descent) and stays finite when every key is far from a query.
"""

from __future__ import annotations

import torch

from utils.checks._harness import (
    call,
    check_earlier_first,
    close,
    describe,
    expect_close,
    expect_rows_sum_to_one,
    expect_tensor,
    fail,
    generator,
    passed,
    require_function,
)

# (n queries, m keys, sigma)
CASES = ((4, 6, 0.6), (1, 1, 0.7), (7, 3, 1.5), (10, 20, 0.3), (5, 8, 2.5))

SOFTMAX_HINT = (
    "Use `torch.softmax(scores, dim=-1)`: it subtracts the largest score first, so it never divides 0 by 0 "
    "(lesson 05 shows how)."
)
GRADIENT_HINT = (
    "the lesson learns σ by gradient descent, so keep σ a tensor: no `float(sigma)`, `.item()` or `math` "
    "functions on it (use `sigma ** 2`, `torch.exp`, ...)."
)


def _sq_gaps(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(n, m) squared gaps (q_i − k_j)², by broadcasting."""
    return (queries[:, None] - keys[None, :]) ** 2  # (n, 1) - (1, m) -> (n, m)


def _reference(queries: torch.Tensor, keys: torch.Tensor, sigma) -> torch.Tensor:
    return torch.softmax(-_sq_gaps(queries, keys) / (2 * sigma**2), dim=-1)  # (n, m)


def _variants(queries: torch.Tensor, keys: torch.Tensor, sigma: float) -> dict[str, torch.Tensor]:
    """The weights each classic mistake gives, keyed by the hint that names it."""
    gaps2 = _sq_gaps(queries, keys)
    return {
        "the exponent needs the *squared* gap (q − k)², not |q − k|.": torch.softmax(
            -gaps2.sqrt() / (2 * sigma**2), dim=-1
        ),
        "divide by 2σ², `2 * sigma ** 2`, not by 2σ.": torch.softmax(-gaps2 / (2 * sigma), dim=-1),
        "you left out the 2: the Gaussian kernel divides by 2σ².": torch.softmax(-gaps2 / sigma**2, dim=-1),
        "you divided by (2σ)² = 4σ²; divide by 2σ², `2 * sigma ** 2`.": torch.softmax(
            -gaps2 / (2 * sigma) ** 2, dim=-1
        ),
    }


def _inputs(n: int, m: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    queries = 5 * torch.rand(n, generator=rng)
    keys = 5 * torch.rand(m, generator=rng)
    return queries, keys


def _expect_weights(weights, queries, keys, sigma, where: str, name: str) -> None:
    """The learner's weights (n, m) are the Gaussian softmax, or a message naming the mistake."""
    __tracebackhide__ = True
    m = len(keys)
    expected = _reference(queries, keys, sigma)
    if close(weights, expected):
        return
    expect_rows_sum_to_one(
        weights,
        columns_message=f"your weights' columns sum to 1, not their rows, for {where}: the softmax runs over the "
        "keys (`dim=-1`), so that each query's weights sum to 1.",
        row_message=f"the weights of query {{i}} sum to {{total}} for {where}, not 1: divide each "
        "exp(−(q − k)² / (2σ²)) by the sum over the keys (that is the softmax).",
    )
    nearest = _sq_gaps(queries, keys).argmin(dim=-1)
    if m > 1 and (weights.gather(-1, nearest[:, None])[:, 0] < weights.amax(dim=-1) - 1e-6).any():
        fail(
            f"your weights are largest for the *farthest* keys, for {where}: the score is *minus* the squared "
            "gap, −(q − k)² / (2σ²), so that the nearest key weighs most."
        )
    for hint, variant in _variants(queries, keys, sigma).items():
        if close(weights, variant, atol=1e-3, rtol=1e-3):
            fail(f"your `{name}` is wrong for {where}: {hint}")
    expect_close(
        weights,
        expected,
        name,
        what="weights",
        where=where,
        hint="w_ij = softmax over the keys j of −(q_i − k_j)² / (2σ²).",
    )


def _expect_finite_far_away(fn, name: str, inputs: dict, where: str) -> torch.Tensor:
    """Queries far from every key: exp underflows to 0 for all keys unless the softmax is stable."""
    __tracebackhide__ = True
    out = expect_tensor(call(fn, name, inputs), name, where=where, allow_nan=True)
    if not torch.isfinite(out).all():
        fail(
            f"your `{name}` gives NaN when every key is far from the query ({where}): exp(−(q − k)² / (2σ²)) "
            f"is 0 for every key there, and 0 / 0 is NaN. {SOFTMAX_HINT}"
        )
    return out


def _expect_gradient(out, sigma: torch.Tensor, expected: torch.Tensor, name: str, where: str) -> None:
    """`out` depends on the tensor `sigma` through autograd, with the right gradient."""
    __tracebackhide__ = True
    if not out.requires_grad:
        fail(f"your `{name}` cut the gradient to σ for {where}: {GRADIENT_HINT}")
    probe = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (mine,) = torch.autograd.grad((out * probe).sum(), sigma, allow_unused=True)
    (theirs,) = torch.autograd.grad((expected * probe).sum(), sigma)
    if mine is None or not close(mine, theirs, atol=1e-4, rtol=1e-3):
        fail(f"the gradient of your `{name}` with respect to σ is wrong for {where}: {GRADIENT_HINT}")


def check_gaussian_weights(gaussian_weights) -> None:
    """`gaussian_weights(queries (n,), keys (m,), sigma) -> (n, m)`: `torch.softmax` of −(q − k)² / (2σ²) over keys."""
    __tracebackhide__ = True
    require_function(gaussian_weights, "gaussian_weights")
    rng = generator(41)
    for n, m, sigma in CASES:
        queries, keys = _inputs(n, m, rng)
        inputs = {"queries": queries, "keys": keys, "sigma": sigma}
        where = describe(inputs)
        weights = expect_tensor(
            call(gaussian_weights, "gaussian_weights", inputs), "gaussian_weights", what="weights", where=where
        )
        if tuple(weights.shape) == (m, n) and n != m:
            fail(
                f"your `gaussian_weights` returned shape ({m}, {n}) for {where}; expected ({n}, {m}): "
                "one row per query, one column per key."
            )
        expect_tensor(weights, "gaussian_weights", (n, m), what="weights", where=where)
        _expect_weights(weights, queries, keys, sigma, where, "gaussian_weights")
    queries, keys = torch.tensor([9.0, 12.0]), torch.tensor([0.0, 0.5, 1.0])
    inputs = {"queries": queries, "keys": keys, "sigma": 0.2}
    far = _expect_finite_far_away(gaussian_weights, "gaussian_weights", inputs, describe(inputs))
    expect_close(far, _reference(queries, keys, 0.2), "gaussian_weights", what="weights", where=describe(inputs))
    queries, keys = _inputs(5, 7, rng)
    sigma = torch.tensor(0.8, requires_grad=True)
    inputs = {"queries": queries, "keys": keys, "sigma": sigma}
    weights = expect_tensor(call(gaussian_weights, "gaussian_weights", inputs), "gaussian_weights", (5, 7))
    _expect_gradient(weights, sigma, _reference(queries, keys, sigma), "gaussian_weights", describe(inputs))
    passed(
        "gaussian_weights",
        f"equal to torch.softmax(−(q − k)² / (2σ²), dim=-1) on {len(CASES)} shapes, stable far away, σ learnable",
    )


def check_nadaraya_watson(nadaraya_watson) -> None:
    """`nadaraya_watson(queries (n,), keys (m,), values (m,), sigma) -> (n,)`: Gaussian weights @ values."""
    __tracebackhide__ = True
    require_function(nadaraya_watson, "nadaraya_watson")
    check_earlier_first(nadaraya_watson, "nadaraya_watson", "gaussian_weights", check_gaussian_weights, "exercise 1")
    rng = generator(42)
    for n, m, sigma in CASES:
        queries, keys = _inputs(n, m, rng)
        values = torch.randn(m, generator=rng)
        inputs = {"queries": queries, "keys": keys, "values": values, "sigma": sigma}
        where = describe(inputs)
        out = expect_tensor(call(nadaraya_watson, "nadaraya_watson", inputs), "nadaraya_watson", where=where)
        shape = tuple(out.shape)
        if shape in ((n, m), (m, n)) and n * m > 1:
            fail(
                f"your `nadaraya_watson` returned shape {shape} for {where}; expected ({n},): one prediction per "
                "query. Sum the weighted values over the keys, or multiply: `weights @ values`."
            )
        if shape in ((n, 1), (1, n)) and n > 1:
            fail(
                f"your `nadaraya_watson` returned shape {shape} for {where}; expected ({n},): drop the extra dimension."
            )
        expect_tensor(out, "nadaraya_watson", (n,), where=where)
        weights = _reference(queries, keys, sigma)
        expected = weights @ values  # (n, m) @ (m,) -> (n,)
        if close(out, expected):
            continue
        if close(out, _reference(keys, queries, sigma).T @ values) and n > 1:
            fail(
                f"your `nadaraya_watson` normalised the weights over the queries for {where}; each query's weights "
                "sum to 1 over the keys: softmax over the keys (`dim=-1`)."
            )
        if close(out, _reference(queries, values, sigma) @ keys):
            fail(
                f"your `nadaraya_watson` swapped keys and values for {where}: the weights compare the queries with "
                "the *keys*; the *values* are what gets averaged."
            )
        for hint, variant in _variants(queries, keys, sigma).items():
            if close(out, variant @ values, atol=1e-3, rtol=1e-3):
                fail(f"your `nadaraya_watson` is wrong for {where}: {hint}")
        constant = torch.full((m,), 0.7)
        flat = call(nadaraya_watson, "nadaraya_watson", {**inputs, "values": constant})
        if isinstance(flat, torch.Tensor) and flat.shape == (n,) and not close(flat, torch.full((n,), 0.7)):
            fail(
                f"your `nadaraya_watson` is not a weighted average for {where}: with every value 0.7 it predicts "
                f"{float(flat[0]):.4g}, not 0.7. Each query's weights must sum to 1 over the keys (a softmax over dim=-1)."
            )
        expect_close(
            out,
            expected,
            "nadaraya_watson",
            what="predictions",
            where=where,
            hint="the prediction at query i is Σ_j w_ij v_j, with w_ij the Gaussian weights of gaussian_weights.",
        )
    queries, keys, values = torch.tensor([9.0, 12.0]), torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, 2.0, 3.0])
    inputs = {"queries": queries, "keys": keys, "values": values, "sigma": 0.2}
    far = _expect_finite_far_away(nadaraya_watson, "nadaraya_watson", inputs, describe(inputs))
    expect_close(far, torch.tensor([3.0, 3.0]), "nadaraya_watson", what="predictions", where=describe(inputs))
    queries, keys = _inputs(5, 7, rng)
    values = torch.randn(7, generator=rng)
    sigma = torch.tensor(0.8, requires_grad=True)
    inputs = {"queries": queries, "keys": keys, "values": values, "sigma": sigma}
    out = expect_tensor(call(nadaraya_watson, "nadaraya_watson", inputs), "nadaraya_watson", (5,))
    _expect_gradient(out, sigma, _reference(queries, keys, sigma) @ values, "nadaraya_watson", describe(inputs))
    passed(
        "nadaraya_watson",
        f"equal to softmax(−(q − k)² / (2σ²)) @ values on {len(CASES)} shapes, stable far away, σ learnable",
    )
