"""`check_<exercise>(your_function)` for every exercise of the course.

Each check tries the learner's code on random inputs of several shapes, compares
it with properties and with PyTorch's own operators, prints one line when it is
right, and raises `AssertionError` saying what is wrong, in the learner's terms,
when it is not. The checks of each lesson live in their own module.
"""

from utils.checks.lesson01 import check_average, check_uniform_weights
from utils.checks.lesson02 import check_causal_average_weights, check_normalize_rows

__all__ = [
    "check_average",
    "check_causal_average_weights",
    "check_normalize_rows",
    "check_uniform_weights",
]
