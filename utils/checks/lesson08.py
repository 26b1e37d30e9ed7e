"""Checks for lesson 08, masking: `causal_mask`, `padding_mask`, `sliding_window_mask`,
`masked_softmax` and `masked_attention`.

Every mask of the course is a bool tensor with True where attending is allowed, the
convention of `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

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


def broadcast_shapes(*shapes) -> torch.Size:
    """`torch.broadcast_shapes` without its first-call cost (it imports sympy, a second or more)."""
    ndim = max((len(shape) for shape in shapes), default=0)
    result = [1] * ndim
    for shape in shapes:
        for axis, size in enumerate(shape, ndim - len(shape)):
            if size != 1:
                if result[axis] not in (1, size):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                result[axis] = size
    return torch.Size(result)


TRUE_MEANS = "In this course (as in F.scaled_dot_product_attention) True means *may attend*"


def _expect_mask(value, name: str, shape: tuple, where: str) -> torch.Tensor:
    """A bool tensor of the right shape, or a message about the dtype or the shape."""
    __tracebackhide__ = True
    mask = expect_tensor(value, name, what="mask", where=where, floating=False)
    if mask.dtype != torch.bool:
        values = torch.unique(mask.detach().float())
        additive = bool(torch.isinf(values).any())
        kind = (
            "an additive float mask (0 and −inf)"
            if additive
            else f"a mask of dtype {mask.dtype} (values {[round(float(v), 3) for v in values[:4]]})"
        )
        fail(
            f"your `{name}` returned {kind} for {where}; return a bool tensor, True where attending is allowed "
            "(build it with comparisons such as `<=`, or call `.bool()` on a tensor of 0s and 1s)."
        )
    if tuple(mask.shape) != tuple(shape):
        fail(f"your `{name}` returned a mask of shape {tuple(mask.shape)} for {where}; expected shape {tuple(shape)}.")
    return mask


def _first_difference(mask: torch.Tensor, expected: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in (mask != expected).nonzero()[0])


def _sdpa_weights(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(scores) over the allowed keys, computed by F.scaled_dot_product_attention (Q = scores, K = V = I)."""
    shape = broadcast_shapes(scores.shape, mask.shape) if mask is not None else scores.shape
    m = shape[-1]
    eye = torch.eye(m, dtype=scores.dtype).expand(*shape[:-2], m, m)
    weights = F.scaled_dot_product_attention(scores.expand(shape), eye, eye, attn_mask=mask, scale=1.0)
    return weights.nan_to_num(0.0)  # a fully masked row: zeros (older PyTorch versions give NaN)


def check_causal_mask(causal_mask) -> None:
    """`causal_mask(n)`: bool (n, n), True on and below the diagonal; SDPA with it equals `is_causal=True`."""
    __tracebackhide__ = True
    require_function(causal_mask, "causal_mask")
    rng = generator(80)
    sizes = (5, 2, 8, 1)  # n = 1 last: there, a reversed mask and a missing diagonal look alike
    for n in sizes:
        inputs = {"n": n}
        where = describe(inputs)
        mask = _expect_mask(call(causal_mask, "causal_mask", inputs), "causal_mask", (n, n), where)
        expected = torch.ones(n, n, dtype=torch.bool).tril()
        if torch.equal(mask, expected):
            continue
        if torch.equal(mask, ~expected):
            fail(
                f"your mask is True above the diagonal and False on and below it ({where}): that is the opposite "
                f"meaning. {TRUE_MEANS}, so True goes on and below the diagonal (j ≤ i)."
            )
        if torch.equal(mask, expected.T):
            fail(
                f"your mask lets position i attend to the positions after it (j > i) and blocks those before ({where}): "
                "that is the future. Keep the lower triangle, diagonal included (`torch.tril`, not `torch.triu`)."
            )
        if torch.equal(mask, expected.tril(-1)):
            fail(
                f"your mask blocks the diagonal ({where}): position i must be allowed to attend to itself, "
                "or position 0 has nothing at all to attend to. Keep j ≤ i, not j < i."
            )
        if bool(mask.all()):
            fail(f"your mask allows everything ({where}): position i must not see the positions j > i after it.")
        i, j = _first_difference(mask, expected)
        if mask[i, j]:
            fail(
                f"your mask is True at ({i}, {j}) ({where}): position {i} would see position {j}, which comes after it."
            )
        fail(f"your mask is False at ({i}, {j}) ({where}): position {i} must be allowed to see position {j} (j ≤ i).")
    # The mask in use: PyTorch's own causal attention, and no output moves when the last token changes.
    n = 6
    mask = call(causal_mask, "causal_mask", {"n": n})
    Q, K, V = torch.randn(3, 2, n, 4, generator=rng)
    out = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    expect_close(
        out,
        F.scaled_dot_product_attention(Q, K, V, is_causal=True),
        "causal_mask",
        what="attention output with your mask",
        where="n = 6",
    )
    K2, V2 = K.clone(), V.clone()
    K2[:, -1], V2[:, -1] = torch.randn(2, 2, 4, generator=rng)
    changed = F.scaled_dot_product_attention(Q, K2, V2, attn_mask=mask)
    if not close(changed[:, :-1], out[:, :-1]):
        fail("with your mask, changing the last token moves the outputs before it: the mask lets the future in.")
    passed(
        "causal_mask",
        f"True on and below the diagonal; SDPA with it equals is_causal=True (n = {', '.join(map(str, sizes))})",
    )


def check_padding_mask(padding_mask) -> None:
    """`padding_mask(lengths (B,), n)`: bool (B, n), True at the first lengths[b] positions of row b."""
    __tracebackhide__ = True
    require_function(padding_mask, "padding_mask")
    cases = (([3, 1, 4], 4), ([2], 5), ([5, 5], 5), ([1, 6, 3, 2], 7))
    for lengths, n in cases:
        lengths = torch.tensor(lengths)
        inputs = {"lengths": lengths, "n": n}
        where = f"lengths = {lengths.tolist()}, n = {n}"
        value = call(padding_mask, "padding_mask", inputs)
        B = len(lengths)
        if isinstance(value, torch.Tensor) and tuple(value.shape) == (n, B) and n != B:
            fail(
                f"your `padding_mask` returned shape ({n}, {B}) for {where}; expected ({B}, {n}): "
                "one row per sentence, one column per position."
            )
        if isinstance(value, torch.Tensor) and value.dim() > 2 and value.numel() == B * n:
            fail(
                f"your `padding_mask` returned shape {tuple(value.shape)} for {where}; expected ({B}, {n}). "
                "Return the plain (B, n) mask: the extra dimensions are added where the mask is used."
            )
        mask = _expect_mask(value, "padding_mask", (B, n), where)
        # PyTorch's own padding: sentences of these lengths, padded with zeros on the right.
        expected = pad_sequence([torch.ones(int(k)) for k in lengths], batch_first=True)
        expected = F.pad(expected, (0, n - expected.shape[1])).bool()  # (B, n)
        if torch.equal(mask, expected):
            continue
        if torch.equal(mask, ~expected):
            fail(
                f"your `padding_mask` is True at the padding and False at the real tokens ({where}): that is the "
                f"opposite meaning. {TRUE_MEANS}: True at the real tokens, the first lengths[b] positions of row b."
            )
        if torch.equal(mask, expected.flip(-1)):
            fail(
                f"your `padding_mask` puts its True values at the end of each row ({where}): the sentences are padded "
                "on the right, so the real tokens are the first lengths[b] positions."
            )
        longer = F.pad(expected, (1, 0), value=True)[:, :n]  # True at j <= lengths[b] (within the row)
        if torch.equal(mask, longer):
            b = int((lengths < n).nonzero()[0])  # a row with padding: there the two differ
            k = int(lengths[b])
            fail(
                f"your `padding_mask` is True at position lengths[b] too ({where}): row {b} has {k} real tokens, "
                f"positions 0..{k - 1}, yet your mask is True at position {k}, which is padding. Position j is real "
                "when j < lengths[b] (positions count from 0), not j ≤ lengths[b]."
            )
        b, j = _first_difference(mask, expected)
        state = "True" if mask[b, j] else "False"
        fail(
            f"your `padding_mask` is {state} at ({b}, {j}) ({where}): sentence {b} has {int(lengths[b])} real tokens, "
            f"so position {j} is {'padding' if mask[b, j] else 'a real token'}."
        )
    passed("padding_mask", f"True at the real tokens, False at the padding ({len(cases)} batches)")


def check_sliding_window_mask(sliding_window_mask) -> None:
    """`sliding_window_mask(n, window)`: bool (n, n), True where i − window < j ≤ i."""
    __tracebackhide__ = True
    require_function(sliding_window_mask, "sliding_window_mask")
    check_earlier_first(sliding_window_mask, "sliding_window_mask", "causal_mask", check_causal_mask, "exercise 1")
    cases = ((6, 2), (5, 1), (7, 3), (4, 4), (4, 6), (8, 3))
    for n, window in cases:
        inputs = {"n": n, "window": window}
        where = describe(inputs)
        mask = _expect_mask(
            call(sliding_window_mask, "sliding_window_mask", inputs), "sliding_window_mask", (n, n), where
        )

        def band(low: int, high: int, n: int = n) -> torch.Tensor:  # True where i + low <= j <= i + high
            offset = torch.arange(n)[None, :] - torch.arange(n)[:, None]  # (n, n): j - i
            return (offset >= low) & (offset <= high)

        expected = band(1 - window, 0)
        if torch.equal(mask, expected):
            continue
        hint = ""
        if torch.equal(mask, ~expected):
            hint = f"that is the opposite meaning. {TRUE_MEANS}."
        elif torch.equal(mask, band(-window, 0)):
            hint = (
                f"row i allows window + 1 = {window + 1} positions. The window counts the position itself: "
                "i − window < j ≤ i (strictly greater on the left)."
            )
        elif window > 1 and torch.equal(mask, band(2 - window, 0)):
            hint = f"row i allows only window − 1 = {window - 1} position{'s' if window > 2 else ''}: keep i − window < j ≤ i."
        elif torch.equal(mask, band(1 - window, window - 1)):
            hint = "your window also looks ahead (j > i). Here a sliding window is causal: the last `window` positions, itself included."
        elif torch.equal(mask, band(0, window - 1)):
            hint = (
                "your window looks at the next positions (i ≤ j < i + window); it should look back: i − window < j ≤ i."
            )
        elif torch.equal(mask, band(-window, -1)):
            hint = "your window leaves out the diagonal: position i must see itself (j ≤ i, not j < i)."
        elif window < n and torch.equal(mask, band(1 - n, 0)):
            hint = f"this is the plain causal mask: row i should reach back only `window` = {window} positions."
        if hint:
            fail(f"your `sliding_window_mask` is wrong for {where}: {hint}")
        r, c = _first_difference(mask, expected)
        fail(
            f"your mask is {'True' if mask[r, c] else 'False'} at ({r}, {c}) for {where}: with window = {window}, "
            f"row {r} may attend to positions {max(0, r - window + 1)}..{r} only."
        )
    passed("sliding_window_mask", f"True where i − window < j ≤ i ({len(cases)} sizes and windows)")


def _random_mask(shape, rng, keep_rows=True) -> torch.Tensor:
    mask = torch.rand(shape, generator=rng) < 0.6
    if keep_rows:  # at least one True per row: no fully masked row
        first = torch.randint(shape[-1], (*shape[:-1], 1), generator=rng)
        mask.scatter_(-1, first, True)
    return mask


def _softmax_cases(rng):
    """(scores, mask) pairs of several shapes; no fully masked row."""
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    padding = torch.arange(6) < torch.tensor([6, 3])[:, None]  # (2, 6)
    return (
        (torch.randn(4, 6, generator=rng), _random_mask((4, 6), rng)),
        (torch.randn(2, 3, 5, 5, generator=rng), causal),
        (torch.randn(2, 3, 4, 6, generator=rng), padding[:, None, None, :]),
        (100 * torch.randn(3, 5, generator=rng), _random_mask((3, 5), rng)),
    )


def check_masked_softmax(masked_softmax) -> None:
    """`masked_softmax(scores, mask)`: softmax over the kept keys (True), compared with
    `F.scaled_dot_product_attention`; masked weights are 0 and a fully masked row is all 0."""
    __tracebackhide__ = True
    require_function(masked_softmax, "masked_softmax")
    rng = generator(81)
    for scores, mask in _softmax_cases(rng):
        inputs = {"scores": scores, "mask": mask}
        where = describe(inputs)
        big = float(scores.abs().max()) > 50
        value = call(masked_softmax, "masked_softmax", inputs)
        if big and isinstance(value, torch.Tensor) and value.is_floating_point() and torch.isnan(value).any():
            fail(
                f"your `masked_softmax` gives NaN for large scores ({where}): e^100 overflows. "
                "Subtract each row's largest score before exponentiating, or use torch.softmax."
            )
        weights = expect_tensor(value, "masked_softmax", scores.shape, what="weights", where=where)
        expected = _sdpa_weights(scores, mask)
        if close(weights, expected):
            continue
        full = mask.expand(scores.shape)
        plain = torch.softmax(scores, dim=-1)
        if close(weights, plain * full):
            total = weights.sum(dim=-1).flatten()
            row = int((total - 1).abs().argmax())
            fail(
                f"a row of your weights sums to {float(total[row]):.3g}, not 1 ({where}): you set the masked weights "
                "to 0 *after* the softmax, so the kept weights no longer sum to 1. Put −inf in the masked scores "
                "*before* the softmax: `scores.masked_fill(~mask, float('-inf'))`."
            )
        if close(weights, torch.softmax(scores.masked_fill(~full, 0.0), dim=-1)) or close(
            weights, torch.softmax(scores * full, dim=-1)
        ):
            fail(
                f"masked positions still get weight ({where}): you set their scores to 0, but a score of 0 is not "
                "'nothing', since e⁰ = 1. Fill the masked scores with −inf, so that e^−inf = 0."
            )
        if close(weights, _sdpa_weights(scores, ~full)):
            fail(
                f"your weights keep the masked positions and drop the kept ones ({where}): that is the opposite "
                f"meaning. In this course True means *keep* (may attend), as in F.scaled_dot_product_attention."
            )
        if close(weights, plain):
            fail(f"your weights are the plain softmax ({where}): the mask was not used; masked positions must get 0.")
        if close(weights, torch.softmax(scores.masked_fill(~full, float("-inf")), dim=-2).nan_to_num(0.0)):
            fail(
                f"your weights sum to 1 down the columns ({where}): take the softmax over the keys, the last dimension."
            )
        leaked = (weights.abs() > 1e-6) & ~full
        if leaked.any():
            index = tuple(int(i) for i in leaked.nonzero()[0])
            fail(f"position {index} is masked (False), yet your weights give it {float(weights[index]):.3g} ({where}).")
        expect_close(weights, expected, "masked_softmax", what="weights", where=where)
    # A fully masked row: what becomes of a query with nothing it may look at.
    scores = torch.randn(3, 4, generator=rng)
    mask = torch.tensor([[True, False, True, False], [False] * 4, [True, True, False, True]])
    inputs = {"scores": scores, "mask": mask}
    where = describe(inputs) + " (row 1 fully masked)"
    weights = expect_tensor(
        call(masked_softmax, "masked_softmax", inputs),
        "masked_softmax",
        (3, 4),
        what="weights",
        where=where,
        allow_nan=True,
    )
    if torch.isnan(weights[1]).any():
        fail(
            f"a fully masked row gives NaN ({where}): every score is −inf, so the softmax divides 0 by 0, and the NaN "
            "spreads to everything computed from it. Give such a row zeros, for example by filling the masked "
            "weights with 0 after the softmax: `weights.masked_fill(~mask, 0.0)`."
        )
    weights = expect_tensor(weights, "masked_softmax", (3, 4), what="weights", where=where)
    if close(weights[1], torch.full((4,), 0.25)):
        fail(
            f"row 1 is fully masked, yet your weights give each of its positions 0.25 ({where}): a large negative "
            "number in place of −inf makes a fully masked row uniform, so it attends to what it must not. "
            "That row must be all zeros."
        )
    if not close(weights[1], torch.zeros(4)):
        fail(f"row 1 is fully masked, so its weights must all be 0; yours are {weights[1].tolist()} ({where}).")
    expect_close(
        weights[[0, 2]], _sdpa_weights(scores[[0, 2]], mask[[0, 2]]), "masked_softmax", what="weights", where=where
    )
    passed(
        "masked_softmax",
        "equals F.scaled_dot_product_attention's weights on 4 shapes; a fully masked row gives zeros, not NaN",
    )


def _attention_cases(rng):
    """(Q, K, V, mask) of several shapes, with and without masks; no fully masked row."""
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    padding = (torch.arange(7) < torch.tensor([7, 4])[:, None])[:, None, None, :]  # (2, 1, 1, 7)
    return (
        (torch.randn(5, 4, generator=rng), torch.randn(5, 4, generator=rng), torch.randn(5, 3, generator=rng), None),
        (
            torch.randn(2, 6, 8, generator=rng),
            torch.randn(2, 6, 8, generator=rng),
            torch.randn(2, 6, 5, generator=rng),
            causal,
        ),
        (
            torch.randn(2, 3, 4, 8, generator=rng),
            torch.randn(2, 3, 7, 8, generator=rng),
            torch.randn(2, 3, 7, 6, generator=rng),
            padding,
        ),
        (
            torch.randn(4, 9, generator=rng),
            torch.randn(6, 9, generator=rng),
            torch.randn(6, 2, generator=rng),
            _random_mask((4, 6), rng),
        ),
    )


def _split(result, name: str, where: str):
    __tracebackhide__ = True
    if isinstance(result, torch.Tensor) or not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(
            f"your `{name}` returned {type(result).__name__} for {where}; return the pair `(out, weights)`, "
            "so that the weights can be plotted."
        )
    return result


def _call_attention(masked_attention, inputs: dict, mask):
    """Call the learner's `masked_attention`; if it fails only when there is no mask, say that None means no mask."""
    __tracebackhide__ = True
    if mask is not None:
        return call(masked_attention, "masked_attention", inputs, mask=mask)
    try:
        return call(masked_attention, "masked_attention", inputs)
    except CheckError as error:
        Q, K = inputs["Q"], inputs["K"]
        everywhere = torch.ones(Q.shape[-2], K.shape[-2], dtype=torch.bool)  # (n, m): every key allowed
        try:
            call(masked_attention, "masked_attention", inputs, mask=everywhere)
        except CheckError:
            raise error from None  # it fails with a mask too: the first message says why
        reason = str(error).split("\n")[0].removeprefix("your `masked_attention` ")
        fail(
            f"your `masked_attention` fails when it is given no mask ({describe(inputs)}, mask=None): it {reason}\n"
            "  mask=None means no mask: every query may attend to every key. Handle that case in "
            "`masked_attention` itself (`if mask is None:` a plain softmax) before anything uses the mask; "
            "your `masked_softmax` takes a bool tensor, not None."
        )


def check_masked_attention(masked_attention) -> None:
    """`masked_attention(Q, K, V, mask=None)` -> (out, weights), equal to `F.scaled_dot_product_attention`
    with `attn_mask=mask`; a fully masked row gives no NaN."""
    __tracebackhide__ = True
    require_function(masked_attention, "masked_attention")
    check_earlier_first(masked_attention, "masked_attention", "masked_softmax", check_masked_softmax, "exercise 4")
    rng = generator(82)
    for Q, K, V, mask in _attention_cases(rng):
        inputs = {"Q": Q, "K": K, "V": V}
        keywords = {} if mask is None else {"mask": mask}
        where = describe({**inputs, **keywords})
        out, weights = _split(_call_attention(masked_attention, inputs, mask), "masked_attention", where)
        *batch, n, d_k = Q.shape
        m, d_v = V.shape[-2:]
        shape = broadcast_shapes(Q.shape[:-2], K.shape[:-2], () if mask is None else mask.shape[:-2])
        out = expect_tensor(out, "masked_attention", (*shape, n, d_v), what="output", where=where)
        weights = expect_tensor(weights, "masked_attention", (*shape, n, m), what="weights", where=where)
        expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
        if not close(out, expected):
            hint = ""
            if close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=1.0)):
                hint = "you did not scale the scores: divide Q Kᵀ by √d_k."
            elif close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=1 / d_k)):
                hint = "you divided the scores by d_k; divide them by √d_k."
            elif d_v != d_k and close(out, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=d_v**-0.5)):
                hint = "you scaled by √d_v, the width of V; scale by √d_k, the width of Q and K."
            elif mask is not None and close(out, F.scaled_dot_product_attention(Q, K, V)):
                hint = "your output ignores the mask: pass it on to the softmax (your masked_softmax)."
            elif mask is not None and close(
                out, F.scaled_dot_product_attention(Q, K, V, attn_mask=~mask).nan_to_num(0.0)
            ):
                hint = f"your mask has the opposite meaning. {TRUE_MEANS}."
            elif mask is not None:
                zeroed = torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(d_k), dim=-1) * mask
                if close(out, zeroed @ V):
                    hint = "you zeroed the masked weights after the softmax; the rows must still sum to 1 (−inf before the softmax)."
            expect_close(out, expected, "masked_attention", what="output", where=where, hint=hint)
        identity = torch.eye(m).expand(*shape, m, m)
        expected_weights = F.scaled_dot_product_attention(
            Q.expand(*shape, n, d_k), K.expand(*shape, m, d_k), identity, attn_mask=mask
        )
        if close(weights.transpose(-2, -1), expected_weights) and n == m:
            fail(f"your weights are transposed ({where}): row i holds query i's weights over the keys.")
        expect_close(weights, expected_weights, "masked_attention", what="weights", where=where)
    # A fully masked row (query 1) must not turn into NaN.
    Q, K, V = torch.randn(4, 4, generator=rng), torch.randn(5, 4, generator=rng), torch.randn(5, 3, generator=rng)
    mask = _random_mask((4, 5), rng)
    mask[1] = False
    inputs = {"Q": Q, "K": K, "V": V}
    where = describe({**inputs, "mask": mask}) + " (row 1 fully masked)"
    out, weights = _split(call(masked_attention, "masked_attention", inputs, mask=mask), "masked_attention", where)
    out = expect_tensor(out, "masked_attention", (4, 3), what="output", where=where, allow_nan=True)
    if torch.isnan(out).any() or (isinstance(weights, torch.Tensor) and torch.isnan(weights).any()):
        fail(
            f"a fully masked row gives NaN ({where}). Use your masked_softmax, which gives such a row zeros, "
            "so that no NaN reaches the output."
        )
    keep = [0, 2, 3]
    expect_close(
        out[keep],
        F.scaled_dot_product_attention(Q[keep], K, V, attn_mask=mask[keep]),
        "masked_attention",
        what="output",
        where=where,
    )
    passed(
        "masked_attention",
        "equals F.scaled_dot_product_attention(attn_mask=mask) on 4 shapes; no NaN when a row is fully masked",
    )
