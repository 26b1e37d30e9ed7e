"""What every check shares: bad submissions become plain sentences, never a crash."""

import time

import numpy as np
import pytest
import torch

from utils import checks
from utils.checks._harness import CheckError, call, expect_close, expect_tensor


def test_a_learner_exception_names_the_error_the_inputs_and_the_line():
    def average(X):
        return X @ torch.ones(7)  # wrong inner size on purpose

    with pytest.raises(CheckError) as caught:
        checks.check_average(average)
    message = str(caught.value)
    assert "your `average` raised RuntimeError" in message
    assert "when called with X of shape (1, 3)" in message
    assert "at your line: return X @ torch.ones(7)" in message


def test_a_stub_says_the_exercise_is_not_written_yet():
    def average(X):
        raise NotImplementedError("your code here")

    with pytest.raises(CheckError, match="not written yet"):
        checks.check_average(average)


def test_an_endless_loop_is_stopped_with_a_message():
    def spin(X):
        while True:
            pass

    start = time.perf_counter()
    with pytest.raises(CheckError, match="ran for more than 0.2 s"):
        call(spin, "spin", {"X": torch.zeros(2)}, time_limit=0.2)
    assert time.perf_counter() - start < 5


def test_a_bare_except_in_learner_code_cannot_swallow_the_time_limit():
    def stubborn(X):
        while True:
            try:
                time.sleep(0.01)
            except Exception:
                pass

    with pytest.raises(CheckError, match="endless loop"):
        call(stubborn, "stubborn", {"X": torch.zeros(2)}, time_limit=0.2)


def test_a_learner_assertion_is_reported_as_theirs():
    def average(X):
        assert X.shape[0] > 100, "too short"

    with pytest.raises(CheckError, match="raised AssertionError: too short"):
        checks.check_average(average)


@pytest.mark.parametrize("given", [torch.zeros(3), "average", 3, [1, 2]])
def test_passing_a_result_instead_of_the_function(given):
    with pytest.raises(AssertionError, match="itself"):
        checks.check_average(given)


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "returned None"),
        ([1.0, 2.0], "returned a list"),
        (np.zeros(2), "returned a numpy array"),
        (3.0, "returned float"),
        (torch.zeros(3), r"shape \(3,\).*expected shape \(2,\)"),
        (torch.zeros(2, dtype=torch.int32), "dtype torch.int32"),
        (torch.tensor([1.0, float("inf")]), "holds infinity at position \\(1,\\)"),
        (torch.tensor([float("nan"), 1.0]), "holds NaN at position \\(0,\\)"),
    ],
)
def test_expect_tensor_says_what_is_wrong(value, message):
    with pytest.raises(CheckError, match=message):
        expect_tensor(value, "f", (2,))


def test_expect_close_points_at_the_worst_entry():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(CheckError, match=r"at \(1, 2\) it is 0.5 but should be 0"):
        expect_close(actual, expected, "f")


def test_a_failed_check_renders_without_a_traceback_in_ipython():
    error = CheckError("row 3 of your weights sums to 1.7")
    assert error._render_traceback_() == ["\x1b[1;31mCheckError\x1b[0m: row 3 of your weights sums to 1.7"]
    assert isinstance(error, AssertionError)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    checks.check_average(lambda X: X.mean(dim=0))
    assert torch.equal(torch.rand(3), expected)
