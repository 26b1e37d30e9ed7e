"""Lessons 03 and 04: each check passes the solution and right answers written differently,
and catches each classic mistake with the message the learner should read."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks

L03 = solution("03_non_local_means")
L04 = solution("04_kernel_regression")


def test_right_answers_pass(capsys):
    checks.check_extract_patches(L03["extract_patches"])
    checks.check_nlm_weights(L03["nlm_weights"])
    checks.check_non_local_means(L03["non_local_means"])
    checks.check_gaussian_weights(L04["gaussian_weights"])
    checks.check_nadaraya_watson(L04["nadaraya_watson"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("✔") for line in lines)


# ---------------------------------------------------------------- lesson 03


def unfold_patches(img, radius, mode="reflect"):
    """Right: F.unfold after padding (the solution uses Tensor.unfold)."""
    padded = F.pad(img[None, None], (radius,) * 4, mode=mode)  # (1, 1, H+2r, W+2r)
    return F.unfold(padded, 2 * radius + 1)[0].T  # (H*W, P)


def symmetric_patches(img, radius):
    """Wrong: numpy's 'symmetric' padding repeats the edge pixel (reflect does not)."""
    if radius == 0:
        return img.reshape(-1, 1)
    rows = torch.cat([img[:radius].flip(0), img, img[-radius:].flip(0)], dim=0)
    padded = torch.cat([rows[:, :radius].flip(1), rows, rows[:, -radius:].flip(1)], dim=1)
    return F.unfold(padded[None, None], 2 * radius + 1)[0].T


def mixed_patches(img, radius):
    """Wrong: reflect padding for the rows, zeros for the columns."""
    rows = F.pad(img[None, None], (0, 0, radius, radius), mode="reflect")
    return F.unfold(F.pad(rows, (radius, radius, 0, 0)), 2 * radius + 1)[0].T


def in_place_patches(img, radius):
    img.clamp_(0.1, 0.9)
    return unfold_patches(img, radius)


EXTRACT_MISTAKES = {
    "zero padding": (lambda img, r: unfold_patches(img, r, "constant"), "padded the border with zeros"),
    "replicate padding": (lambda img, r: unfold_patches(img, r, "replicate"), "repeated the edge pixels"),
    "circular padding": (lambda img, r: unfold_patches(img, r, "circular"), "wrapped around"),
    "symmetric padding": (symmetric_patches, "repeated the edge pixels"),  # at r = 1 it is replicate padding
    "reflect rows, zero columns": (mixed_patches, "right inside the image but wrong at the border"),
    "no padding": (lambda img, r: F.unfold(img[None, None], 2 * r + 1)[0].T, "pixels at the border got no patch"),
    "one column per pixel": (lambda img, r: unfold_patches(img, r).T, "one column per pixel"),
    "not flattened": (
        lambda img, r: unfold_patches(img, r).reshape(*img.shape, -1),
        "flatten it to",
    ),
    "radius + 1": (lambda img, r: unfold_patches(img, r + 1)[: img.numel()], "a patch of radius r = 1 is"),
    "patch read by columns": (
        lambda img, r: (
            unfold_patches(img, r).reshape(-1, 2 * r + 1, 2 * r + 1).transpose(1, 2).reshape(img.numel(), -1)
        ),
        "read column by column",
    ),
    "pixels by columns": (
        lambda img, r: unfold_patches(img, r).reshape(*img.shape, -1).transpose(0, 1).reshape(img.numel(), -1),
        "your pixels are in the wrong order",
    ),
    "numpy": (lambda img, r: unfold_patches(img, r).numpy(), "returned a numpy array"),
    "in place": (in_place_patches, "changed its input `img` in place"),
}


@pytest.mark.parametrize("mistake", EXTRACT_MISTAKES)
def test_check_extract_patches_catches(mistake):
    wrong, message = EXTRACT_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_extract_patches(wrong)


def distances2(patches):
    return torch.cdist(patches, patches) ** 2  # (N, N)


def expanded_weights(p, h, shape_norms):
    """The exercise's way: ‖p_i‖² + ‖p_j‖² − 2 p_i·p_j, the two norm vectors shaped by `shape_norms`."""
    norms = (p**2).sum(dim=-1)  # (N,)
    first, second = shape_norms(norms)
    distances = (first + second - 2 * p @ p.T).clamp_min(0)  # (N, N)
    exps = torch.exp(-distances / h**2)  # (N, N)
    return exps / exps.sum(dim=-1, keepdim=True)  # (N, N)


NLM_WEIGHTS_MISTAKES = {
    "distance not squared": (
        lambda p, h: torch.softmax(-torch.cdist(p, p) / h**2, dim=-1),
        "square each difference, then sum, no square root",
    ),
    "h, not h²": (lambda p, h: torch.softmax(-distances2(p) / h, dim=-1), "not by h."),
    "2h²": (lambda p, h: torch.softmax(-distances2(p) / (2 * h**2), dim=-1), "divide by h², not 2h²"),
    "mean over the patch": (
        lambda p, h: torch.softmax(-distances2(p) / (p.shape[1] * h**2), dim=-1),
        "do not average them",
    ),
    "wrong axis": (lambda p, h: torch.softmax(-distances2(p) / h**2, dim=0), "your columns sum to 1, not your rows"),
    "not normalised": (lambda p, h: torch.exp(-distances2(p) / h**2), "of your weights sums to"),
    "sign flipped": (lambda p, h: torch.softmax(distances2(p) / h**2, dim=-1), "largest for the *least* similar"),
    "scores, not weights": (lambda p, h: -distances2(p) / h**2, "hold negative numbers"),
    "one row only": (lambda p, h: torch.softmax(-distances2(p)[0] / h**2, dim=-1), "one row of weights for every"),
    "both norms as rows": (
        lambda p, h: expanded_weights(p, h, lambda norms: (norms[None, :], norms[None, :])),
        "one norm must be a column, `squared_norms[:, None]` (N, 1), and the other a row",
    ),
    "both norms as rows, 1-D": (
        lambda p, h: expanded_weights(p, h, lambda norms: (norms, norms)),
        "one norm must be a column, `squared_norms[:, None]` (N, 1), and the other a row",
    ),
    "both norms as columns": (
        lambda p, h: expanded_weights(p, h, lambda norms: (norms[:, None], norms[:, None])),
        "a patch's distance to itself is still 0, which hides the mistake",
    ),
}


@pytest.mark.parametrize("mistake", NLM_WEIGHTS_MISTAKES)
def test_check_nlm_weights_catches(mistake):
    wrong, message = NLM_WEIGHTS_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_nlm_weights(wrong)


def all_pairs_nlm(
    img,
    patch_radius,
    h,
    search_radius=None,
    *,
    mode="reflect",
    window_change=0,
    score=lambda d2, h: -d2 / h**2,
    normalise=True,
    flat=False,
):
    """Non-local means as all pairs with a window mask: right by default, each keyword one mistake."""
    height, width = img.shape
    patches = unfold_patches(img, patch_radius, mode)  # (N, P)
    scores = score(distances2(patches), h)  # (N, N)
    if search_radius is not None:
        s = search_radius + window_change
        rows = torch.arange(height).repeat_interleave(width)  # (N,)
        cols = torch.arange(width).repeat(height)  # (N,)
        near = ((rows[:, None] - rows[None]).abs() <= s) & ((cols[:, None] - cols[None]).abs() <= s)  # (N, N)
        scores = scores.masked_fill(~near, float("-inf"))
    weights = torch.softmax(scores, dim=-1) if normalise else torch.exp(scores)  # (N, N)
    out = weights @ img.reshape(-1)  # (N,)
    return out if flat else out.reshape(height, width)


def loop_nlm(img, patch_radius, h, search_radius=None):
    """Right: one pixel at a time."""
    height, width = img.shape
    patches = unfold_patches(img, patch_radius)
    s = search_radius if search_radius is not None else max(height, width)
    out = torch.empty(height, width)
    for i in range(height):
        for j in range(width):
            near = [a * width + b for a in range(height) for b in range(width) if abs(a - i) <= s and abs(b - j) <= s]
            d2 = ((patches[near] - patches[i * width + j]) ** 2).sum(dim=-1)
            out[i, j] = torch.softmax(-d2 / h**2, dim=0) @ img.reshape(-1)[near]
    return out


def offsets_nlm(img, patch_radius, h, search_radius=None, *, dim=0, multiply_mask=False):
    """Right by default: the window one offset at a time, then a softmax over the offsets (`dim=0` of
    (K, H, W)). Wrong with another `dim`, or with the mask put in by multiplying (0 · −inf is NaN)."""
    height, width = img.shape
    s = min(max(height, width) - 1 if search_radius is None else search_radius, max(height, width) - 1)
    patches = unfold_patches(img, patch_radius).reshape(height, width, -1)  # (H, W, P)
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None, :]  # (H, 1), (1, W)
    scores, values = [], []
    for a in range(-s, s + 1):
        for b in range(-s, s + 1):
            inside = (rows + a >= 0) & (rows + a < height) & (cols + b >= 0) & (cols + b < width)  # (H, W)
            i, j = (rows + a).clamp(0, height - 1), (cols + b).clamp(0, width - 1)  # (H, 1), (1, W)
            score = -((patches[i, j] - patches) ** 2).sum(dim=-1) / h**2  # (H, W)
            if multiply_mask:
                score = score * inside + (~inside) * float("-inf")
            else:
                score = score.masked_fill(~inside, float("-inf"))
            scores.append(score)
            values.append(img[i, j])  # (H, W)
    weights = torch.softmax(torch.stack(scores), dim=dim)  # (K, H, W)
    return (weights * torch.stack(values)).sum(dim=0)  # (K, H, W) -> (H, W)


def outside_nlm(img, patch_radius, h, search_radius=None):
    """Wrong: the window reaches outside the image, into its reflect padding."""
    if search_radius is None:
        return all_pairs_nlm(img, patch_radius, h)
    s = min(search_radius, min(img.shape) - 1)
    wide = F.pad(img[None, None], (s,) * 4, mode="reflect")[0, 0]
    return all_pairs_nlm(wide, patch_radius, h, search_radius)[s:-s, s:-s]


NLM_MISTAKES = {
    "ignores the window": (
        lambda img, r, h, s=None: all_pairs_nlm(img, r, h, None),
        "averaged over the whole image",
    ),
    "window with <": (lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, window_change=-1), "one pixel too small"),
    "window too wide": (lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, window_change=1), "one pixel too large"),
    "zero padding": (lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, mode="constant"), "padded with zeros"),
    "h, not h²": (lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, score=lambda d2, h: -d2 / h), "not by h."),
    "distance not squared": (
        lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, score=lambda d2, h: -d2.sqrt() / h**2),
        "no square root",
    ),
    "not normalised": (
        lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, normalise=False),
        "each pixel's weights must sum to 1",
    ),
    "flat output": (lambda img, r, h, s=None: all_pairs_nlm(img, r, h, s, flat=True), "reshape it to (H, W)"),
    "outside the image": (outside_nlm, "wrong near its border"),
    "returns the noisy image": (lambda img, r, h, s=None: img.clone(), "denoised image for"),
    "softmax over the image's columns": (
        lambda img, r, h, s=None: offsets_nlm(img, r, h, s, dim=-1),
        "holds NaN for img of shape (7, 6), patch_radius = 1, h = 0.35, search_radius = None, first at pixel (0, 0). "
        "That is 0 / 0, a softmax over scores that are all −inf. Yours runs over the wrong axis",
    ),
    "softmax over the image's rows": (lambda img, r, h, s=None: offsets_nlm(img, r, h, s, dim=1), "the wrong axis"),
    "mask by multiplying": (
        lambda img, r, h, s=None: offsets_nlm(img, r, h, s, multiply_mask=True),
        "never by multiplying by the mask",
    ),
}


@pytest.mark.parametrize("mistake", NLM_MISTAKES)
def test_check_non_local_means_catches(mistake):
    wrong, message = NLM_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_non_local_means(wrong)


# ---------------------------------------------------------------- lesson 04


def gaps2(q, k):
    return (q[:, None] - k[None, :]) ** 2  # (n, m)


def log_sum_exp_weights(q, k, sigma):
    """Right, written differently: exp(score - logsumexp(score))."""
    scores = -gaps2(q, k) / (2 * sigma**2)
    return torch.exp(scores - torch.logsumexp(scores, dim=-1, keepdim=True))


def naive(q, k, sigma):
    kernel = torch.exp(-gaps2(q, k) / (2 * sigma**2))
    return kernel / kernel.sum(dim=-1, keepdim=True)


GAUSSIAN_MISTAKES = {
    "gap not squared": (
        lambda q, k, s: torch.softmax(-(q[:, None] - k).abs() / (2 * s**2), -1),
        "the *squared* gap",
    ),
    "σ, not σ²": (lambda q, k, s: torch.softmax(-gaps2(q, k) / (2 * s), -1), "not by 2σ."),
    "no 2": (lambda q, k, s: torch.softmax(-gaps2(q, k) / s**2, -1), "you left out the 2"),
    "(2σ)²": (lambda q, k, s: torch.softmax(-gaps2(q, k) / (2 * s) ** 2, -1), "you divided by (2σ)²"),
    "wrong axis": (lambda q, k, s: torch.softmax(-gaps2(q, k) / (2 * s**2), 0), "columns sum to 1, not their rows"),
    "not normalised": (lambda q, k, s: torch.exp(-gaps2(q, k) / (2 * s**2)), "sum over the keys"),
    "sign flipped": (lambda q, k, s: torch.softmax(gaps2(q, k) / (2 * s**2), -1), "largest for the *farthest* keys"),
    "keys × queries": (
        lambda q, k, s: torch.softmax(-gaps2(q, k) / (2 * s**2), -1).T,
        "one row per query, one column per key",
    ),
    "exp over its sum": (naive, "gives NaN when every key is far from the query"),
    "float(sigma)": (
        lambda q, k, s: torch.softmax(-gaps2(q, k) / (2 * float(s) ** 2), -1),
        "cut the gradient to σ",
    ),
}


def test_other_right_answers_pass():
    """Right answers written differently from the solutions pass too."""
    checks.check_extract_patches(unfold_patches)
    checks.check_nlm_weights(lambda p, h: torch.softmax(-distances2(p) / h**2, dim=-1))
    checks.check_non_local_means(all_pairs_nlm)
    checks.check_non_local_means(loop_nlm)
    checks.check_non_local_means(offsets_nlm)
    checks.check_gaussian_weights(log_sum_exp_weights)
    checks.check_nadaraya_watson(lambda q, k, v, s: (log_sum_exp_weights(q, k, s) * v).sum(dim=-1))


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")
@pytest.mark.parametrize("mistake", GAUSSIAN_MISTAKES)
def test_check_gaussian_weights_catches(mistake):
    wrong, message = GAUSSIAN_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_gaussian_weights(wrong)


NADARAYA_MISTAKES = {
    "weighted values, not summed": (
        lambda q, k, v, s: torch.softmax(-gaps2(q, k) / (2 * s**2), -1) * v,
        "Sum the weighted values over the keys",
    ),
    "the weights": (lambda q, k, v, s: torch.softmax(-gaps2(q, k) / (2 * s**2), -1), "one prediction per query"),
    "keepdim": (
        lambda q, k, v, s: torch.softmax(-gaps2(q, k) / (2 * s**2), -1) @ v[:, None],
        "drop the extra dimension",
    ),
    "not normalised": (lambda q, k, v, s: torch.exp(-gaps2(q, k) / (2 * s**2)) @ v, "is not a weighted average"),
    "over the queries": (
        lambda q, k, v, s: torch.softmax(-gaps2(q, k) / (2 * s**2), 0) @ v,
        "normalised the weights over the queries",
    ),
    "keys and values swapped": (
        lambda q, k, v, s: torch.softmax(-gaps2(q, v) / (2 * s**2), -1) @ k,
        "swapped keys and values",
    ),
    "no 2": (lambda q, k, v, s: torch.softmax(-gaps2(q, k) / s**2, -1) @ v, "you left out the 2"),
    "exp over its sum": (lambda q, k, v, s: naive(q, k, s) @ v, "gives NaN when every key is far"),
    "sigma.item()": (
        lambda q, k, v, s: torch.softmax(-gaps2(q, k) / (2 * torch.as_tensor(s).item() ** 2), -1) @ v,
        "cut the gradient to σ",
    ),
    "the global average": (lambda q, k, v, s: v.mean().expand(len(q)), "predictions for"),
}


@pytest.mark.parametrize("mistake", NADARAYA_MISTAKES)
def test_check_nadaraya_watson_catches(mistake):
    wrong, message = NADARAYA_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_nadaraya_watson(wrong)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    checks.check_non_local_means(L03["non_local_means"])
    checks.check_gaussian_weights(L04["gaussian_weights"])
    assert torch.equal(torch.rand(3), expected)


def test_the_windowed_solution_matches_all_pairs_on_a_real_image():
    """The notebook's unfold version and the all-pairs reference agree beyond the checks' tiny images."""
    from utils import images

    img = images.add_noise(images.load("hopper", 24), 0.1)
    h = 0.8 * 0.1 * math.sqrt(2 * 25)
    torch.testing.assert_close(L03["non_local_means"](img, 2, h, 4), all_pairs_nlm(img, 2, h, 4), atol=1e-5, rtol=1e-4)


def zero_padded_patches(img, radius):
    """Zero padding instead of reflect padding."""
    size = 2 * radius + 1
    return F.unfold(img[None, None], size, padding=radius)[0].T  # (1, P, L) -> (L, P)


@pytest.mark.parametrize(
    "earlier, wrong, exercise",
    [
        ("extract_patches", zero_padded_patches, "exercise 1"),
        ("nlm_weights", lambda patches, h: torch.softmax(-distances2(patches) / h, dim=-1), "exercise 2"),
    ],
)
def test_a_wrong_earlier_exercise_is_named_before_non_local_means(earlier, wrong, exercise):
    """A right `non_local_means` that calls a wrong earlier function is told to fix that one first."""
    namespace = solution("03_non_local_means")
    namespace[earlier] = wrong
    with pytest.raises(AssertionError) as error:
        checks.check_non_local_means(namespace["non_local_means"])
    assert f"your `{earlier}` is wrong: fix it first ({exercise})" in str(error.value)


def test_a_wrong_gaussian_weights_is_named_before_nadaraya_watson():
    namespace = solution("04_kernel_regression")
    namespace["gaussian_weights"] = lambda q, k, sigma: torch.softmax(-gaps2(q, k) / sigma**2, dim=-1)  # no 2
    with pytest.raises(AssertionError) as error:
        checks.check_nadaraya_watson(namespace["nadaraya_watson"])
    assert "your `gaussian_weights` is wrong: fix it first (exercise 1)" in str(error.value)
    assert "left out the 2" in str(error.value)
