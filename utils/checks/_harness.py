"""What every check is made of: calling the learner's code safely, and saying in
the learner's words what is wrong with what came back.

A check raises `AssertionError` with a plain sentence when something is wrong
and prints one line when all is well. Frames here carry `__tracebackhide__`, so
IPython and pytest show the learner the message, not the inside of `utils`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import signal
import threading
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

TIME_LIMIT = 20.0  # seconds one call of the learner's code may take
_UTILS = str(Path(__file__).resolve().parent.parent)


class CheckError(AssertionError):
    """A check that failed: an `AssertionError` whose message is all the learner needs.

    In a notebook IPython shows just the message (no traceback into `utils`), through
    the `_render_traceback_` hook it looks for on exceptions.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31m{type(self).__name__}\x1b[0m: {self}"]


def fail(message: str) -> None:
    """Stop the check with `message`, said in the learner's terms."""
    __tracebackhide__ = True
    raise CheckError(message)


class _TimeUp(BaseException):
    """Raised inside the learner's code when it runs past its time (not an Exception, so
    a bare `except Exception` in their code cannot swallow it)."""


class ChangedInPlace(Exception):
    """Raised by the grader's stand-in when the learner's code wrote into argument number `position`, or
    (None) into a tensor given to it in an earlier call: the grader's own tensors never change, since it
    judges on inputs the learner's code never held, so it says so instead."""

    def __init__(self, position: int | None) -> None:
        super().__init__(position)
        self.position = position


def generator(seed: int = 0) -> torch.Generator:
    """A private random generator: checks never move the notebook's own random state."""
    return torch.Generator().manual_seed(seed)


def shape_of(value) -> str:
    """How a value looks, in a few words: `shape (3, 4)`, `a list of 3`, `5`."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"numpy shape {value.shape}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return repr(value)


def describe(inputs: dict) -> str:
    """`X of shape (3, 4), n = 5`: the inputs of a call, for a message."""
    parts = []
    for key, value in inputs.items():
        if isinstance(value, (torch.Tensor, np.ndarray, list, tuple)):
            parts.append(f"{key} of {shape_of(value)}")
        else:
            parts.append(f"{key} = {value!r}")
    return ", ".join(parts)


def require_function(fn, name: str, kind: str = "function") -> None:
    """The check was given the learner's function itself, not its result or a typo."""
    __tracebackhide__ = True
    if isinstance(fn, type) and kind == "function":
        return
    if not callable(fn):
        raise CheckError(
            f"check_ takes your {kind} `{name}` itself, not {shape_of(fn) if not isinstance(fn, str) else repr(fn)}: "
            f"write the name without brackets, as in `check_...({name})`."
        )


def _your_line(error: BaseException) -> str:
    """The last line of the learner's own code in a traceback, if we can find it."""
    if getattr(error, "grader_line", ""):  # an error the grader brought back from the student's process
        return f"\n  at your line: {error.grader_line}"
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        filename = frame.filename or ""
        if filename.startswith(_UTILS) or "site-packages" in filename or "/torch/" in filename:
            continue
        if frame.line:
            return f"\n  at your line: {frame.line.strip()}"
    return ""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread on Unix; elsewhere no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def time_up(signum, frame):
        raise _TimeUp

    previous = signal.signal(signal.SIGALRM, time_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _remote(fn) -> bool:
    """Whether `fn` stands for code in another process (the grader's proxy), not the learner's object itself."""
    return getattr(type(fn), "grader_remote", False) is True


def _snapshot(inputs: dict) -> dict:
    return {key: value.detach().clone() for key, value in inputs.items() if isinstance(value, torch.Tensor)}


def call(fn: Callable, name: str, inputs: dict, *, time_limit: float = TIME_LIMIT, **keywords):
    """Call the learner's `fn` with `inputs` (positionally, in order) and `keywords`.

    Whatever goes wrong inside (an exception, no code yet, an endless loop, an input
    changed in place) comes back as an `AssertionError` that names the inputs.
    """
    __tracebackhide__ = True
    before = _snapshot(inputs)
    where = describe({**inputs, **keywords})
    try:
        if _remote(fn):  # the grader's stand-in: the learner's code runs in another process, which keeps the time
            result = fn.grader_call(time_limit, *inputs.values(), **keywords)
        else:
            with _time_limit(time_limit):
                result = fn(*inputs.values(), **keywords)
    except NotImplementedError:
        raise CheckError(
            f"`{name}` is not written yet: it still raises NotImplementedError. Replace the stub with your code."
        ) from None
    except _TimeUp:
        raise CheckError(
            f"your `{name}` ran for more than {time_limit:g} s on {where}: is there an endless loop?"
        ) from None
    except ChangedInPlace as changed:
        if changed.position is None:
            raise CheckError(
                f"your `{name}` changed a tensor it was given in an earlier call (seen when it was called with "
                f"{where}): never write into what you are given; build new tensors (`torch.cat` makes them) rather "
                "than writing into old ones (`out=`, `resize_`, `copy_`, `+=`)."
            ) from None
        raise CheckError(_in_place(name, list(inputs)[changed.position])) from None
    except CheckError:
        raise
    except Exception as error:  # the learner's own error, reported in their terms
        raise CheckError(
            f"your `{name}` raised {type(error).__name__}: {error}\n  when called with {where}{_your_line(error)}"
        ) from None
    for key, value in before.items():
        now = inputs[key]
        if now.shape != value.shape or not torch.equal(now.detach(), value):
            raise CheckError(_in_place(name, key))
    return result


def _in_place(name: str, key: str) -> str:
    return (
        f"your `{name}` changed its input `{key}` in place; leave it as it is and return a new tensor "
        "(for example `x = x / s` rather than `x /= s`)."
    )


def expect_tensor(
    value,
    name: str,
    shape: tuple | None = None,
    *,
    what: str = "result",
    where: str = "",
    floating: bool = True,
    allow_nan: bool = False,
) -> torch.Tensor:
    """The learner returned a tensor of the right shape, with floats and no NaN or infinity."""
    __tracebackhide__ = True
    suffix = f" for {where}" if where else ""
    if value is None:
        raise CheckError(f"your `{name}` returned None{suffix}: did you forget `return`?")
    if isinstance(value, np.ndarray):
        raise CheckError(
            f"your `{name}` returned a numpy array as its {what}{suffix}; compute with torch operations so it is a torch tensor."
        )
    if isinstance(value, (list, tuple)):
        raise CheckError(
            f"your `{name}` returned a {type(value).__name__} as its {what}{suffix}; return one torch tensor "
            "(build it with torch operations, or torch.stack / torch.tensor)."
        )
    if not isinstance(value, torch.Tensor):
        raise CheckError(
            f"your `{name}` returned {type(value).__name__} `{value!r}` as its {what}{suffix}; it should be a torch tensor."
        )
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckError(
            f"your `{name}` returned a {what} of shape {tuple(value.shape)}{suffix}; expected shape {tuple(shape)}."
        )
    if floating and not (value.is_floating_point() or value.is_complex()):
        raise CheckError(
            f"your `{name}` returned a {what} of dtype {value.dtype}{suffix}; it should hold floats "
            "(integers lose the fractions: use `/`, not `//`, and float tensors)."
        )
    if floating and not allow_nan:
        bad = ~torch.isfinite(value.detach())
        if bad.any():
            index = tuple(int(i) for i in bad.nonzero()[0])
            kind = "NaN" if torch.isnan(value.detach()[index]) else "infinity"
            raise CheckError(f"your `{name}`'s {what}{suffix} holds {kind} at position {index}.")
    return value


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and values within tolerance (never raises)."""
    actual = torch.as_tensor(actual).detach()
    expected = torch.as_tensor(expected).detach()
    if actual.shape != expected.shape:
        return False
    return bool(torch.allclose(actual.double().cpu(), expected.double().cpu(), atol=atol, rtol=rtol))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def expect_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    name: str,
    *,
    what: str = "result",
    where: str = "",
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> None:
    """Equal within tolerance, or a message pointing at the entry that is furthest off."""
    __tracebackhide__ = True
    if close(actual, expected, atol, rtol):
        return
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    error = (actual - expected).abs() - rtol * expected.abs()
    index = tuple(int(i) for i in np.unravel_index(int(error.argmax()), tuple(error.shape))) if error.dim() else ()
    suffix = f" for {where}" if where else ""
    message = f"your `{name}`'s {what}{suffix} is wrong: at {index} it is {_fmt(actual[index])} but should be {_fmt(expected[index])}."
    raise CheckError(message + (f"\n  Hint: {hint}" if hint else ""))


def expect_rows_sum_to_one(weights: torch.Tensor, *, columns_message: str, row_message: str) -> None:
    """Each row of `weights (n, m)` sums to 1; if the columns do instead, the softmax ran over the wrong axis.

    `row_message` is a template with `{i}` (the row) and `{total}` (what it sums to).
    """
    __tracebackhide__ = True
    rows, columns = weights.double().sum(dim=-1), weights.double().sum(dim=0)
    if weights.shape[0] > 1 and close(columns, torch.ones_like(columns)) and not close(rows, torch.ones_like(rows)):
        fail(columns_message)
    for i, total in enumerate(rows.tolist()):
        if abs(total - 1) > 1e-4:
            fail(row_message.format(i=i, total=f"{total:.4g}"))


def passed(name: str, detail: str) -> None:
    """The one line a learner sees when a check passes."""
    print(f"✔ {name} passes: {detail}")


def _functions_of(fn) -> list:
    """`fn` itself, or every function defined in the body of a class."""
    if isinstance(fn, type):
        members = (getattr(member, "__func__", member) for member in vars(fn).values())
        return [member for member in members if isinstance(member, types.FunctionType)]
    return [fn] if isinstance(fn, types.FunctionType) else []


def _names_used(functions: list) -> set[str]:
    """Every global name the code of these functions (and of what they define inside) refers to."""
    names, stack = set(), [function.__code__ for function in functions]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    return names


def earlier_exercise(fn, name: str):
    """The learner's own `name` (an earlier exercise) if their `fn` calls it, else None.

    Found where `fn` was defined: the notebook's namespace for a function or a class written
    there. An object that stands for code running elsewhere (the grader's) answers through its
    `earlier_exercise(name)` method instead.
    """
    if _remote(fn):
        return fn.earlier_exercise(name)
    functions = _functions_of(fn)
    if not functions or name not in _names_used(functions):
        return None
    found = functions[0].__globals__.get(name)
    return found if callable(found) else None


# What the check running now would blame, should it fail: an earlier exercise it calls that is wrong.
_BLAME: contextvars.ContextVar[str | None] = contextvars.ContextVar("blame", default=None)


def check_earlier_first(fn, name: str, uses: str, check: Callable, exercise: str) -> None:
    """If the learner's `fn` calls their own `uses` (an earlier exercise) and that one is wrong, remember it:
    `fn` is still judged on its own, against the reference, and only if it fails is the earlier one named as
    the mistake to fix first: "your `softmax` is wrong: fix it first (exercise 1)". A right `fn` passes,
    whatever else the notebook holds (it may call `torch.softmax`, not the learner's `softmax`)."""
    __tracebackhide__ = True
    if _BLAME.get() is not None:
        return
    other = earlier_exercise(fn, uses)
    if other is None:
        return
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(other)
    except CheckError as error:
        _BLAME.set(
            f"your `{name}` calls your `{uses}`, and your `{uses}` is wrong: fix it first ({exercise}).\n  {error}"
        )


def blames_earlier(check: Callable) -> Callable:
    """`check`, which names a wrong earlier exercise (see `check_earlier_first`) only when it fails itself."""

    @functools.wraps(check)
    def judged(*args, **kwargs):
        __tracebackhide__ = True
        token = _BLAME.set(None)
        try:
            return check(*args, **kwargs)
        except CheckError:
            blame = _BLAME.get()
            if blame is None:
                raise
            raise CheckError(blame) from None
        finally:
            _BLAME.reset(token)

    return judged
