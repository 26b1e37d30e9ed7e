"""A check names a wrong earlier exercise only when the later one fails because of it.

Every check that calls `check_earlier_first` is tried both ways, with the learner's earlier exercise wrong:
a right later exercise whose code names the earlier one but does not depend on it (the learner wrote
`torch.softmax`, or kept a stray reference) passes; a later exercise that does call the wrong earlier one
fails, and the message says to fix the earlier one first.
"""

from __future__ import annotations

import pytest
import torch

from tests.notebook_code import solution
from utils import checks


def _wrong_split(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, num_heads, T, D // num_heads)  # no transpose: the positions and heads mix


def _wrong_merge(x):
    B, h, T, d = x.shape
    return x.reshape(B, T, h * d)  # no transpose back


# (lesson, later exercise, its check, the earlier exercise it may call, a wrong version of that one, exercise number)
CASES = [
    ("02_weighted_average", "causal_average_weights", "normalize_rows", lambda S: S, "exercise 1"),
    (
        "03_non_local_means",
        "non_local_means",
        "extract_patches",
        lambda img, radius: torch.zeros(img.numel(), (2 * radius + 1) ** 2),
        "exercise 1",
    ),
    ("03_non_local_means", "non_local_means", "nlm_weights", lambda p, h: torch.eye(p.shape[0]), "exercise 2"),
    (
        "04_kernel_regression",
        "nadaraya_watson",
        "gaussian_weights",
        lambda q, k, sigma: torch.ones(len(q), len(k)) / len(k),
        "exercise 1",
    ),
    ("05_dot_product_attention", "dot_product_attention", "softmax", lambda s, dim=-1: s.softmax(0), "exercise 1"),
    (
        "05_dot_product_attention",
        "scaled_dot_product_attention",
        "softmax",
        lambda s, dim=-1: s.softmax(0),
        "exercise 1",
    ),
    ("07_multi_head_attention", "MultiHeadAttention", "split_heads", _wrong_split, "exercise 1"),
    ("07_multi_head_attention", "MultiHeadAttention", "merge_heads", _wrong_merge, "exercise 1"),
    ("08_masking", "sliding_window_mask", "causal_mask", lambda n: torch.ones(n, n, dtype=torch.bool), "exercise 1"),
    ("08_masking", "masked_attention", "masked_softmax", lambda scores, mask: scores.softmax(-1), "exercise 4"),
    ("12_generation", "grouped_query_attention", "repeat_kv", lambda x, groups: x.repeat(1, groups, 1, 1), ""),
]
IDS = [f"{later} after {earlier}" for _, later, earlier, _, _ in CASES]
# Later exercises whose solution does not call the earlier one: a right version that does.
CALLING = {
    "sliding_window_mask": (
        "def sliding_window_mask(n, window):\n"
        "    allowed = causal_mask(n)  # (n, n): j <= i\n"
        "    return allowed & ~allowed.tril(-window)  # and not j <= i - window\n"
    )
}


def _check_of(exercise: str):
    from utils.course import check_name

    return getattr(checks, check_name(exercise))


def _names_but_never_calls(right, earlier: str, wrong):
    """A right `later` (the instructor's, with its own right helpers) whose code also names the learner's wrong
    `earlier`, as `torch.softmax` names `softmax`."""
    namespace = {earlier: wrong, "right": right}
    if isinstance(right, type):
        source = (
            "class Later(right):\n"
            "    def forward(self, *args, **kwargs):\n"
            f"        {earlier}  # named, never called\n"
            "        return super().forward(*args, **kwargs)\n"
        )
        exec(source, namespace)
        namespace["Later"].__name__ = right.__name__
        return namespace["Later"]
    source = f"def later(*args, **kwargs):\n    {earlier}  # named, never called\n    return right(*args, **kwargs)\n"
    exec(source, namespace)
    later = namespace["later"]
    later.__wrapped__, later.__name__ = right, right.__name__  # its signature is the right one's
    return later


@pytest.mark.parametrize("lesson, later, earlier, wrong, exercise", CASES, ids=IDS)
def test_a_right_exercise_passes_whatever_the_earlier_one_is(lesson, later, earlier, wrong, exercise, capsys):
    right = solution(lesson)[later]
    _check_of(later)(_names_but_never_calls(right, earlier, wrong))
    assert "passes" in capsys.readouterr().out


@pytest.mark.parametrize("lesson, later, earlier, wrong, exercise", CASES, ids=IDS)
def test_an_exercise_that_calls_a_wrong_earlier_one_is_told_to_fix_that_first(lesson, later, earlier, wrong, exercise):
    namespace = solution(lesson)
    if later in CALLING:
        exec(CALLING[later], namespace)
        _check_of(later)(namespace[later])  # right while the earlier one is
    namespace[earlier] = wrong
    with pytest.raises(AssertionError) as error:
        _check_of(later)(namespace[later])
    assert f"calls your `{earlier}`, and your `{earlier}` is wrong: fix it first" in str(error.value), error.value


def test_attention_written_with_torch_softmax_passes_beside_a_wrong_softmax(capsys):
    """The case that was failed: `torch.softmax` names `softmax`, and the learner's own softmax was wrong."""
    namespace = {"torch": torch, "softmax": lambda scores, dim=-1: scores.exp()}  # the learner's, unnormalised
    exec(
        "def dot_product_attention(X):\n"
        "    weights = torch.softmax(X @ X.transpose(-2, -1), dim=-1)  # (..., n, n)\n"
        "    return weights @ X, weights\n",
        namespace,
    )
    checks.check_dot_product_attention(namespace["dot_product_attention"])
    assert "dot_product_attention passes" in capsys.readouterr().out
