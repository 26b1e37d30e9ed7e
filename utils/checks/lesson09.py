"""Checks for lesson 09, positional encoding: `sinusoidal_encoding` and `apply_rope`."""

from __future__ import annotations

import torch

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


def _angles(n: int, d: int, base: float = 10000.0, exponent: str = "2i/d", start: int = 0) -> torch.Tensor:
    """The angle of position p on pair i, `(n, d/2)`, written out one entry at a time (float64).

    `exponent` picks the frequency rule: "2i/d" (right), "i/d", or "4i/d".
    """
    factor = {"2i/d": 2.0, "i/d": 1.0, "4i/d": 4.0}[exponent]
    angles = torch.empty(n, d // 2, dtype=torch.float64)
    for p in range(n):
        for i in range(d // 2):
            angles[p, i] = (p + start) / base ** (factor * i / d)
    return angles


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Columns 0, 2, 4, ... from `even` and 1, 3, 5, ... from `odd`."""
    return torch.stack([even, odd], dim=-1).flatten(-2)


def check_sinusoidal_encoding(sinusoidal_encoding) -> None:
    """`sinusoidal_encoding(n, d) -> (n, d)`: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same)."""
    __tracebackhide__ = True
    require_function(sinusoidal_encoding, "sinusoidal_encoding")
    cases = ((1, 2), (4, 6), (10, 8), (50, 16), (7, 64))
    for n, d in cases:
        inputs = {"n": n, "d": d}
        where = describe(inputs)
        value = call(sinusoidal_encoding, "sinusoidal_encoding", inputs)
        if isinstance(value, torch.Tensor) and tuple(value.shape) == (d, n) and n != d:
            fail(
                f"your `sinusoidal_encoding` returned shape ({d}, {n}) for {where}; expected ({n}, {d}): "
                "one row per position, one column per dimension."
            )
        PE = expect_tensor(value, "sinusoidal_encoding", (n, d), what="encoding", where=where)
        angles = _angles(n, d)
        expected = _interleave(angles.sin(), angles.cos())
        if close(PE, expected):
            continue
        hint = ""
        if close(PE, _interleave(angles.cos(), angles.sin())):
            hint = "sin and cos are swapped: sin goes on the even columns (0, 2, 4, ...), cos on the odd ones."
        elif close(PE, torch.cat([angles.sin(), angles.cos()], dim=-1)):
            hint = (
                "you put the sines in the first half and the cosines in the second half (another layout you "
                "will meet in code); the contract interleaves them: sin on even columns, cos on odd columns."
            )
        elif close(PE, _interleave(_angles(n, d, exponent="i/d").sin(), _angles(n, d, exponent="i/d").cos())):
            hint = "the frequency exponent should be 2i/d, not i/d (i counts the pairs of columns: 0, 1, ..., d/2 − 1)."
        elif close(PE, _interleave(_angles(n, d, exponent="4i/d").sin(), _angles(n, d, exponent="4i/d").cos())):
            hint = (
                "the frequency exponent is twice too large: with i the pair index (0..d/2 − 1) it is 2i/d; "
                "if you loop over the even columns 2i themselves, the exponent is that column / d."
            )
        elif close(PE, _interleave(_angles(n, d, start=1).sin(), _angles(n, d, start=1).cos())):
            hint = "your positions start at 1; they start at 0, so row 0 is [0, 1, 0, 1, ...] (sin 0 = 0, cos 0 = 1)."
        else:
            columns = torch.arange(d, dtype=torch.float64)
            own = torch.arange(n, dtype=torch.float64)[:, None] / 10000 ** (
                columns / d
            )  # each column its own frequency
            if close(PE, torch.where(columns.long() % 2 == 0, own.sin(), own.cos())):
                hint = (
                    "each column got its own frequency; columns 2i and 2i + 1 are a pair and share one frequency, "
                    "1 / 10000^(2i/d), one with sin and the other with cos."
                )
            elif n > 1:
                multiplied = torch.arange(n, dtype=torch.float64)[:, None] * 10000 ** (2 * torch.arange(d // 2) / d)
                if close(PE, _interleave(multiplied.sin(), multiplied.cos())):
                    hint = (
                        "you multiplied the position by 10000^(2i/d); divide by it (the waves get slower as i grows)."
                    )
        if hint:
            fail(f"your `sinusoidal_encoding` is wrong for {where}: {hint}")
        if not close(PE[0], _interleave(torch.zeros(d // 2), torch.ones(d // 2))):
            fail(
                f"row 0 of your encoding is {[round(float(v), 3) for v in PE[0, :6]]}... for {where}; position 0 "
                "should be [0, 1, 0, 1, ...]: sin 0 = 0 on the even columns, cos 0 = 1 on the odd ones."
            )
        expect_close(
            PE,
            expected,
            "sinusoidal_encoding",
            what="encoding",
            where=where,
            hint="PE[p, 2i] = sin(p / 10000^(2i/d)) and PE[p, 2i+1] = cos(p / 10000^(2i/d)).",
        )
    passed("sinusoidal_encoding", f"sin on even, cos on odd columns, base 10000 ({len(cases)} sizes)")


def _rope(x: torch.Tensor, base: float = 10000.0, layout: str = "interleaved", sign: float = 1.0, **angle_options):
    """x rotated with complex numbers: each pair of dimensions is one complex number, times e^(i·angle)."""
    n, d = x.shape[-2:]
    angles = sign * _angles(n, d, base, **angle_options)  # (n, d/2)
    x = x.double()
    if layout == "interleaved":  # pairs (x[2i], x[2i+1])
        pairs = x.reshape(*x.shape[:-1], d // 2, 2)  # (..., n, d/2, 2)
    else:  # "half": pairs (x[i], x[i + d/2])
        pairs = torch.stack([x[..., : d // 2], x[..., d // 2 :]], dim=-1)  # (..., n, d/2, 2)
    rotated = torch.view_as_real(
        torch.view_as_complex(pairs.contiguous()) * torch.polar(torch.ones_like(angles), angles)
    )
    if layout == "interleaved":
        return rotated.flatten(-2)  # (..., n, d)
    return torch.cat([rotated[..., 0], rotated[..., 1]], dim=-1)  # (..., n, d)


def check_apply_rope(apply_rope) -> None:
    """`apply_rope(x (..., n, d), base=10000)`: position p rotates each pair (x[2i], x[2i+1]) by p · base^(−2i/d),
    compared with multiplication by e^(i·angle) in complex numbers."""
    __tracebackhide__ = True
    require_function(apply_rope, "apply_rope")
    rng = generator(90)
    cases = (((5, 4), {}), ((2, 7, 8), {}), ((2, 3, 6, 16), {}), ((9, 6), {"base": 100.0}))
    for shape, keywords in cases:
        x = torch.randn(*shape, generator=rng)
        inputs = {"x": x}
        where = describe({**inputs, **keywords})
        value = call(apply_rope, "apply_rope", inputs, **keywords)
        out = expect_tensor(value, "apply_rope", shape, what="result", where=where)
        expected = _rope(x, **keywords)
        if close(out, expected):
            continue
        base = keywords.get("base", 10000.0)
        hint = ""
        if close(out, _rope(x, base, layout="half")):
            hint = (
                "you paired x[i] with x[i + d/2] (the 'rotate-half' layout of GPT-NeoX and Hugging Face's Llama); "
                "the contract is RoFormer's: neighbours (x[2i], x[2i+1]) form a pair."
            )
        elif close(out, _rope(x, base, sign=-1.0)):
            hint = (
                "each pair turns the wrong way (by −angle): "
                "x'[2i] = x[2i]·cos − x[2i+1]·sin and x'[2i+1] = x[2i]·sin + x[2i+1]·cos."
            )
        elif "base" in keywords and close(out, _rope(x)):
            hint = "you used 10000 whatever the `base` argument says; use `base`."
        elif close(out, _rope(x, base, exponent="i/d")):
            hint = "the frequency of pair i is base^(−2i/d), not base^(−i/d) (i counts pairs: 0, 1, ..., d/2 − 1)."
        elif close(out, _rope(x, base, exponent="4i/d")):
            hint = "the frequency exponent is twice too large: pair i, made of columns 2i and 2i + 1, turns at base^(−2i/d)."
        elif close(out, _rope(x, base, start=1)):
            hint = (
                "your positions start at 1; position 0 is not rotated at all, so row 0 of the result equals row 0 of x."
            )
        elif len(shape) > 2 and close(out[tuple([0] * (len(shape) - 2))], expected[tuple([0] * (len(shape) - 2))]):
            hint = "the first sequence of the batch is right but not the others: positions run along dim −2 (n) only."
        elif len(shape) > 2 and not close(out.norm(dim=-1), x.norm(dim=-1)):
            hint = "a rotation keeps each vector's length, and yours do not: the positions are the second-to-last dimension, n = x.shape[-2]."
        elif not close(out.norm(dim=-1), x.norm(dim=-1)):
            hint = "a rotation keeps the length of every pair, and yours do not: mix each pair with cos and sin of one angle."
        expect_close(out, expected, "apply_rope", where=where, hint=hint)
    # The property the lesson is about: a rotated query and key meet at a score that depends only on distance.
    q, k = torch.randn(2, 1, 8, generator=rng).double()
    rotated_q = call(apply_rope, "apply_rope", {"x": q.expand(6, 8).contiguous()})
    rotated_k = call(apply_rope, "apply_rope", {"x": k.expand(6, 8).contiguous()})
    scores = rotated_q @ rotated_k.T  # (6, 6): query at p, key at r
    for offset in range(-5, 6):
        diagonal = scores.diagonal(offset)
        if not close(diagonal, diagonal[:1].expand_as(diagonal)):
            fail(
                "your rotated queries and keys score differently at the same distance: the scores must depend on p − r only."
            )
    passed("apply_rope", "rotates neighbouring pairs by p · base^(−2i/d); scores depend only on the distance")
