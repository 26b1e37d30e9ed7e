"""Checks for lesson 03, non-local means: `extract_patches`, `nlm_weights` and `non_local_means`.

Every reference here is built from PyTorch's own operators (`F.pad`, `F.unfold`,
`torch.cdist`, `torch.softmax`) on small images, so the checks stay fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.checks._harness import (
    CheckError,
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

REFLECT_HINT = (
    "pad with reflect padding, `F.pad(img[None, None], (r, r, r, r), mode='reflect')`: the border is mirrored, "
    "so a patch at the edge looks like the image around it, not like a black frame."
)
SQUARED_HINT = "‖p_i − p_j‖² is the *sum* of the squared differences: square each difference, then sum, no square root."
H_SQUARED_HINT = "divide the squared distances by h², `h ** 2`, not by h."
TWO_H_HINT = "the non-local means weights divide by h², not 2h² (the 2σ² belongs to the Gaussian kernel of lesson 04)."
MEAN_HINT = "sum the squared differences over the patch (`.sum(dim=-1)`), do not average them: ‖p_i − p_j‖² is a sum."
BROADCAST_HINT = (
    "your squared distances add one patch's squared norm twice, not one norm of each patch. In "
    "‖p_i − p_j‖² = ‖p_i‖² + ‖p_j‖² − 2 p_i·p_j, ‖p_i‖² changes down the rows (with i) and ‖p_j‖² along the "
    "columns (with j): one norm must be a column, `squared_norms[:, None]` (N, 1), and the other a row, "
    "`squared_norms[None, :]` (1, N), so that they broadcast to (N, N). With both as rows (or both as columns) the "
    "distance from p_i to p_j comes out as 2‖p_j‖² − 2 p_i·p_j (or 2‖p_i‖² − 2 p_i·p_j): a patch's distance to "
    "itself is still 0, which hides the mistake, but the distance from p_i to p_j is no longer the distance from "
    "p_j to p_i, and it can fall below 0."
)
SIGN_HINT = (
    "the scores are *minus* the squared distance over h²: the most similar patch (the pixel's own, at distance 0) "
    "gets the largest weight."
)


def _patches(img: torch.Tensor, radius: int, mode: str = "reflect") -> torch.Tensor:
    """(H*W, P) patches from PyTorch's own `F.pad` and `F.unfold`."""
    padded = F.pad(img[None, None], (radius,) * 4, mode=mode)  # (1, 1, H+2r, W+2r)
    return F.unfold(padded, kernel_size=2 * radius + 1)[0].T  # (1, P, H*W) -> (H*W, P)


def _squared_distances(patches: torch.Tensor) -> torch.Tensor:
    """(N, N) squared Euclidean distances between the rows, in double precision."""
    return torch.cdist(patches.double(), patches.double()) ** 2


def _test_image(height: int, width: int, rng: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    """A small image with structure (two regions and a bright square) plus Gaussian noise."""
    cols = torch.arange(width)
    img = torch.where(cols > width / 2, 0.7, 0.2).expand(height, width).clone()  # (H, W): a dark and a bright half
    img[height // 4 : height // 4 + 2, 1:3] = 0.9
    return img + noise * torch.randn(height, width, generator=rng)


def _near_border(height: int, width: int, margin: int) -> torch.Tensor:
    """(H, W) True for the pixels within `margin` of the image's border."""
    rows = torch.arange(height)[:, None]
    cols = torch.arange(width)[None, :]
    inner = (rows >= margin) & (rows < height - margin) & (cols >= margin) & (cols < width - margin)
    return ~inner


def check_extract_patches(extract_patches) -> None:
    """`extract_patches(img (H, W), radius) -> (H*W, (2r+1)**2)`: equal to `F.unfold` after reflect padding."""
    __tracebackhide__ = True
    require_function(extract_patches, "extract_patches")
    rng = generator(31)
    cases = ((5, 7, 1), (6, 6, 2), (4, 9, 0), (8, 5, 3), (7, 4, 1))
    for height, width, radius in cases:
        img = torch.rand(height, width, generator=rng)
        inputs = {"img": img, "radius": radius}
        where = describe(inputs)
        n, size = height * width, 2 * radius + 1
        out = expect_tensor(call(extract_patches, "extract_patches", inputs), "extract_patches", where=where)
        shape = tuple(out.shape)
        if shape == (size * size, n) and n != size * size:
            fail(
                f"your `extract_patches` returned shape {shape} for {where}: one column per pixel. "
                f"The contract is one *row* per pixel, ({n}, {size * size}): transpose it (`.T`)."
            )
        if shape in ((height, width, size * size), (height, width, size, size)):
            fail(
                f"your `extract_patches` returned shape {shape} for {where}; flatten it to ({n}, {size * size}), "
                "one row per pixel: `.reshape(H * W, -1)`."
            )
        if len(shape) == 2 and shape[0] == (height - 2 * radius) * (width - 2 * radius) and radius > 0:
            fail(
                f"your `extract_patches` returned {shape[0]} patches for {where}, not H·W = {n}: pixels at the "
                f"border got no patch. Pad the image by r = {radius} on every side first; {REFLECT_HINT}"
            )
        if len(shape) == 2 and shape[0] == n and shape[1] != size * size:
            fail(
                f"your patches have {shape[1]} pixels for {where}; a patch of radius r = {radius} is "
                f"(2r+1) × (2r+1) = {size} × {size} = {size * size} pixels."
            )
        expect_tensor(out, "extract_patches", (n, size * size), where=where)
        expected = _patches(img, radius)
        if close(out, expected):
            continue
        if close(out, _patches(img, radius, "constant")):
            fail(f"your `extract_patches` padded the border with zeros for {where}; {REFLECT_HINT}")
        for mode, words in (("replicate", "repeated the edge pixels (replicate)"), ("circular", "wrapped around")):
            if close(out, _patches(img, radius, mode)):
                fail(f"your `extract_patches` {words} at the border for {where}; {REFLECT_HINT}")
        by_columns = expected.reshape(n, size, size).transpose(1, 2).reshape(n, size * size)
        if radius > 0 and close(out, by_columns):
            fail(
                f"your patches are read column by column for {where}; read each patch row by row "
                "(its first row, then its second, ...), as `reshape` does."
            )
        pixel_order = expected.reshape(height, width, -1).transpose(0, 1).reshape(n, -1)
        if close(out, pixel_order):
            fail(
                f"your pixels are in the wrong order for {where}: row i·W + j must be the patch of pixel (i, j), "
                "row by row through the image; yours go down the columns first."
            )
        wrong = ~torch.isclose(out.double(), expected.double(), atol=1e-5, rtol=1e-4).all(dim=-1)
        border = _near_border(height, width, radius).reshape(-1)
        if radius > 0 and bool(wrong.any()) and not bool((wrong & ~border).any()):
            pixel = int(wrong.nonzero()[0])
            fail(
                f"your patches are right inside the image but wrong at the border for {where}, "
                f"first at pixel ({pixel // width}, {pixel % width}); {REFLECT_HINT}"
            )
        expect_close(
            out,
            expected,
            "extract_patches",
            what="patches",
            where=where,
            hint="row i·W + j is the (2r+1) × (2r+1) patch centred on pixel (i, j), read row by row.",
        )
    passed("extract_patches", f"equal to reflect padding + F.unfold on {len(cases)} images, radius 0 to 3")


def _weights_variants(distances2: torch.Tensor, h: float, patch_size: int) -> dict[str, torch.Tensor]:
    """Weights computed with each classic mistake, to name the one the learner made."""
    return {
        SQUARED_HINT: torch.softmax(-distances2.sqrt() / h**2, dim=-1),
        H_SQUARED_HINT: torch.softmax(-distances2 / h, dim=-1),
        TWO_H_HINT: torch.softmax(-distances2 / (2 * h**2), dim=-1),
        MEAN_HINT: torch.softmax(-distances2 / (patch_size * h**2), dim=-1),
    }


def _same_norms_twice(patches: torch.Tensor, h: float) -> list[torch.Tensor]:
    """Weights from ‖p‖² + ‖p‖² − 2 p_i·p_j with both norm vectors as rows, or both as columns (clamped or not)."""
    squared_norms = (patches.double() ** 2).sum(dim=-1)  # (N,)
    dots = patches.double() @ patches.double().T  # (N, P) @ (P, N) -> (N, N)
    variants = []
    for norms in (squared_norms[None, :], squared_norms[:, None]):  # (1, N): both rows; (N, 1): both columns
        distances2 = 2 * norms - 2 * dots  # (N, N)
        variants += [torch.softmax(-distances2 / h**2, dim=-1), torch.softmax(-distances2.clamp_min(0) / h**2, dim=-1)]
    return variants


def check_nlm_weights(nlm_weights) -> None:
    """`nlm_weights(patches (N, P), h) -> (N, N)`: `torch.softmax` over j of −‖p_i − p_j‖² / h²."""
    __tracebackhide__ = True
    require_function(nlm_weights, "nlm_weights")
    rng = generator(32)
    cases = ((6, 9, 0.7), (1, 4, 0.5), (8, 25, 1.5), (12, 9, 0.45), (5, 4, 2.0))
    for n, size, h in cases:
        # spread chosen so that distances / h² are of order 1: neither uniform nor one-hot
        patches = 0.8 * h / size**0.5 * torch.randn(n, size, generator=rng)
        inputs = {"patches": patches, "h": h}
        where = describe(inputs)
        weights = expect_tensor(call(nlm_weights, "nlm_weights", inputs), "nlm_weights", what="weights", where=where)
        if tuple(weights.shape) == (n,):
            fail(
                f"your `nlm_weights` returned shape ({n},) for {where}; expected ({n}, {n}): "
                "one row of weights for every patch i, one column for every patch j."
            )
        expect_tensor(weights, "nlm_weights", (n, n), what="weights", where=where)
        distances2 = _squared_distances(patches)
        expected = torch.softmax(-distances2 / h**2, dim=-1)
        if close(weights, expected):
            continue
        if (weights < -1e-6).any():
            fail(f"your weights hold negative numbers for {where}; weights are exponentials, so never negative.")
        expect_rows_sum_to_one(
            weights,
            columns_message=f"your columns sum to 1, not your rows, for {where}: the softmax runs over j, "
            "the pixels being averaged (`dim=-1`), so that each row is one pixel's weights.",
            row_message=f"row {{i}} of your weights sums to {{total}} for {where}, not 1: "
            "divide each exp(−‖p_i − p_j‖² / h²) by the sum of its row (that is the softmax).",
        )
        if n > 1 and any(close(weights, variant, atol=1e-3, rtol=1e-3) for variant in _same_norms_twice(patches, h)):
            fail(f"your `nlm_weights` is wrong for {where}: {BROADCAST_HINT}")
        if n > 1 and (weights.diagonal() < weights.amax(dim=-1) - 1e-6).any():
            fail(f"your weights are largest for the *least* similar patches, for {where}: {SIGN_HINT}")
        for hint, variant in _weights_variants(distances2, h, size).items():
            if close(weights, variant, atol=1e-3, rtol=1e-3):
                fail(f"your `nlm_weights` is wrong for {where}: {hint}")
        expect_close(
            weights,
            expected,
            "nlm_weights",
            what="weights",
            where=where,
            hint="w_ij = exp(−‖p_i − p_j‖² / h²) / Σ_k exp(−‖p_i − p_k‖² / h²).",
        )
    passed("nlm_weights", f"equal to torch.softmax(−cdist² / h², dim=-1) on {len(cases)} sets of patches")


def _nlm_reference(
    img: torch.Tensor,
    radius: int,
    h: float,
    search_radius: int | None,
    *,
    mode: str = "reflect",
    mistake: str = "",
) -> torch.Tensor:
    """Non-local means from `F.pad`, `F.unfold`, `torch.cdist` and `torch.softmax`, optionally with a mistake."""
    height, width = img.shape
    patches = _patches(img.double(), radius, mode)  # (N, P)
    distances2 = _squared_distances(patches)  # (N, N)
    if mistake:
        scores = {
            "sqrt": -distances2.sqrt() / h**2,
            "h": -distances2 / h,
            "2h": -distances2 / (2 * h**2),
            "mean": -distances2 / (patches.shape[1] * h**2),
        }[mistake]
    else:
        scores = -distances2 / h**2
    if search_radius is not None:
        rows = torch.arange(height).repeat_interleave(width)  # (N,) row of each pixel
        cols = torch.arange(width).repeat(height)  # (N,) column of each pixel
        near = ((rows[:, None] - rows[None, :]).abs() <= search_radius) & (
            (cols[:, None] - cols[None, :]).abs() <= search_radius
        )  # (N, N)
        scores = scores.masked_fill(~near, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (N, N)
    return (weights @ img.double().reshape(-1)).reshape(height, width)


def _wrong_axis_nans(height: int, width: int, search: int) -> list[torch.Tensor]:
    """(H, W) where a windowed non-local means gives NaN when its softmax runs over one axis of the
    (2s+1, 2s+1, H, W) scores instead of over all the offsets: the row offsets alone, the column offsets
    alone, the image's rows or its columns. A slice along that axis holding only neighbours outside the
    image is all −inf, and its softmax is 0 / 0."""
    framed = F.pad(torch.ones(height, width), (search,) * 4)  # (H+2s, W+2s): 1 inside the image, 0 around
    inside = framed.unfold(0, height, 1).unfold(1, width, 1) > 0  # (2s+1, 2s+1, H, W): [a+s, b+s, i, j]
    patterns = []
    for axis in range(4):
        all_outside = ~inside.any(dim=axis, keepdim=True)  # a slice along `axis` with no neighbour inside
        patterns.append(all_outside.expand_as(inside).any(dim=1).any(dim=0))  # (H, W)
    return patterns


# (H, W, patch_radius, h, search_radius): a softmax over a wrong axis gives NaN on this image's border only
NAN_AXIS_PROBE = (9, 10, 1, 0.35, 1)


def _explain_nan(non_local_means, out: torch.Tensor, where: str) -> None:
    """The learner's image holds NaN: say why. A softmax over the wrong axis is found by the pixels it
    leaves NaN on a probe image, where it spoils the border and nothing else."""
    __tracebackhide__ = True
    nan = torch.isnan(out.detach())
    i, j = (int(k) for k in nan.nonzero()[0])
    first = f"your `non_local_means`'s denoised image holds NaN for {where}, first at pixel ({i}, {j})."
    height, width, radius, h, search = NAN_AXIS_PROBE
    img = _test_image(height, width, generator(34))
    try:
        probe = call(
            non_local_means, "non_local_means", {"img": img, "patch_radius": radius, "h": h, "search_radius": search}
        )
    except CheckError:
        probe = None
    if isinstance(probe, torch.Tensor) and probe.shape == (height, width) and probe.is_floating_point():
        probe_nan = torch.isnan(probe.detach())
        if probe_nan.any() and not probe_nan.all():
            if any(torch.equal(probe_nan, pattern) for pattern in _wrong_axis_nans(height, width, search)):
                fail(
                    f"{first} That is 0 / 0, a softmax over scores that are all −inf. Yours runs over the "
                    "wrong axis: the image's rows or its columns, or the row offsets or the column offsets alone. "
                    "Along such an axis a pixel near the border meets a slice of neighbours that are all outside "
                    "the image, so every score in it is −inf. Run each pixel's softmax over all its (2s+1)² "
                    "offsets at once (`dim=0` of the scores stacked as (K, height, width), K = (2s+1)²): offset "
                    "(0, 0), the pixel itself, is always inside, so every pixel has a finite score there."
                )
    fail(
        f"{first} NaN comes from 0 / 0 (a softmax, or a division by a sum, over scores that are all −inf) or "
        "from arithmetic with infinity (0 · −inf, −inf − (−inf)). Put −inf into the scores with "
        "`scores.masked_fill(~inside, float('-inf'))`, never by multiplying by the mask, and run each pixel's "
        "softmax over all the offsets of its window, where its own offset (0, 0) always has a finite score."
    )


_NLM_MISTAKES = {"sqrt": SQUARED_HINT, "h": H_SQUARED_HINT, "2h": TWO_H_HINT, "mean": MEAN_HINT}


def check_non_local_means(non_local_means) -> None:
    """`non_local_means(img (H, W), patch_radius, h, search_radius=None) -> (H, W)`, all pairs or windowed."""
    __tracebackhide__ = True
    require_function(non_local_means, "non_local_means")
    check_earlier_first(non_local_means, "non_local_means", "extract_patches", check_extract_patches, "exercise 1")
    check_earlier_first(non_local_means, "non_local_means", "nlm_weights", check_nlm_weights, "exercise 2")
    rng = generator(33)
    # (H, W, patch_radius, h, search_radius): h ≈ 0.8 σ √(2P) for the noise σ = 0.1 of the test images
    cases = (
        (7, 6, 1, 0.35, None),
        (11, 10, 1, 0.35, 2),
        (14, 15, 2, 0.55, 3),
        (6, 7, 0, 0.12, 1),
        (8, 9, 1, 0.35, 20),
        (9, 10, 2, 0.55, None),
    )
    for height, width, radius, h, search in cases[:2]:  # a constant image comes back unchanged
        img = torch.full((height, width), 0.7)
        inputs = {"img": img, "patch_radius": radius, "h": h, "search_radius": search}
        where = describe(inputs)
        out = expect_tensor(
            call(non_local_means, "non_local_means", inputs), "non_local_means", where=where, allow_nan=True
        )
        if torch.isnan(out.detach()).any():
            _explain_nan(non_local_means, out, where)
        if tuple(out.shape) == (height * width,):
            fail(f"your `non_local_means` returned shape {tuple(out.shape)} for {where}; reshape it to (H, W).")
        expect_tensor(out, "non_local_means", (height, width), where=where)
        if not close(out, img):
            fail(
                f"a constant image should come back unchanged, but yours did not for {where} "
                f"(pixel (0, 0) became {float(out[0, 0]):.4g}, not 0.7): each pixel's weights must sum to 1."
            )
    for height, width, radius, h, search in cases:
        img = _test_image(height, width, rng)
        inputs = {"img": img, "patch_radius": radius, "h": h, "search_radius": search}
        where = describe(inputs)
        out = expect_tensor(
            call(non_local_means, "non_local_means", inputs), "non_local_means", where=where, allow_nan=True
        )
        if torch.isnan(out.detach()).any():
            _explain_nan(non_local_means, out, where)
        if tuple(out.shape) == (height * width,):
            fail(f"your `non_local_means` returned shape {tuple(out.shape)} for {where}; reshape it to (H, W).")
        expect_tensor(out, "non_local_means", (height, width), where=where)
        expected = _nlm_reference(img, radius, h, search)
        if close(out, expected):
            continue
        window = search is not None and search < max(height, width) - 1
        if window and close(out, _nlm_reference(img, radius, h, None)):
            fail(
                f"your `non_local_means` averaged over the whole image for {where}; with a search radius s = {search}, "
                f"pixel i only averages the pixels j with |row_i − row_j| ≤ {search} and |col_i − col_j| ≤ {search}."
            )
        if window and close(out, _nlm_reference(img, radius, h, search - 1)):
            fail(
                f"your search window is one pixel too small for {where}: |row_i − row_j| ≤ s includes the pixels "
                f"exactly s = {search} away (`<=`, not `<`), a window of (2s+1) × (2s+1) pixels."
            )
        if window and close(out, _nlm_reference(img, radius, h, search + 1)):
            fail(
                f"your search window is one pixel too large for {where}: it is (2s+1) × (2s+1) pixels, "
                f"reaching s = {search} pixels on each side."
            )
        if radius > 0 and close(out, _nlm_reference(img, radius, h, search, mode="constant")):
            fail(f"your patches were padded with zeros for {where}; {REFLECT_HINT}")
        for mistake, hint in _NLM_MISTAKES.items():
            if close(out, _nlm_reference(img, radius, h, search, mistake=mistake), atol=1e-3, rtol=1e-3):
                fail(f"your `non_local_means` is wrong for {where}: {hint}")
        wrong = ~torch.isclose(out.double(), expected, atol=1e-5, rtol=1e-4)
        middle = ~_near_border(height, width, radius + search) if window else None
        if window and bool(middle.any() & wrong.any()) and not bool((wrong & middle).any()):
            i, j = (int(k) for k in wrong.nonzero()[0])
            fail(
                f"your `non_local_means` is right in the middle of the image but wrong near its border for {where}, "
                f"first at pixel ({i}, {j}). Patches use reflect padding, and pixels outside the image are never "
                "averaged: a pixel at the edge simply has fewer neighbours (mask them with −inf before the softmax)."
            )
        expect_close(
            out,
            expected,
            "non_local_means",
            what="denoised image",
            where=where,
            hint="pixel i is Σ_j w_ij · img_j over the pixels j of its search window, with nlm_weights' rule.",
        )
    passed(
        "non_local_means",
        f"equal to a softmax over patch distances (F.unfold + torch.cdist), all pairs and windowed, on {len(cases)} images",
    )
