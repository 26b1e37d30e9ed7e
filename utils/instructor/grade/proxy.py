"""The grader's side of a check: stand-ins for the student's objects.

A check is given a `Remote` where a notebook gives it the learner's function or class. Calling
it, reading or setting an attribute, or asking for an earlier exercise sends a request to the
student's kernel (see `serve.py`) and reads the answer back as plain data, with
`torch.load(..., weights_only=True)`: tensors, numbers, strings, and lists, tuples and dicts of
them. Everything else the student's code makes stays in the student's process and comes back as
another `Remote`. Nothing the student wrote ever runs here.

Gradients flow through a call: a result that carries a gradient in the student's process comes
back through a `torch.autograd.Function` whose backward pass asks the student's process for the
gradients of the inputs (and lets its parameters collect theirs), as a local backward would.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import itertools
import weakref
from typing import Any, Protocol

import torch

from utils.checks import _harness

MISSING = object()
_MIRRORS: dict[str, weakref.ref] = {}  # tensor number -> this process's copy of a tensor that crossed
_NUMBERS = itertools.count()
PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)
KNOWN_ERRORS = {"NotImplementedError", "TypeError", "ValueError", "RuntimeError", "IndexError", "KeyError"}
KNOWN_ERRORS |= {"AttributeError", "NameError", "ZeroDivisionError", "AssertionError", "OverflowError"}
# What the sandbox answers to something it does not allow (the network, a write outside the student's folders).
REFUSED = ("Read-only file system", "Operation not permitted", "Permission denied", "Network is unreachable")


class KernelLost(BaseException):
    """The student's kernel died (or stopped answering) while a check used it."""


class RemoteTimeout(Exception):
    """The student's code ran past the time it was given."""


class Channel(Protocol):
    def request(self, payload: dict, timeout: float | None = None) -> dict:
        """Send `payload` to the student's kernel and return its answer (raises RemoteTimeout, KernelLost)."""


def encode(value: Any, sent: list[str] | None = None) -> Any:
    """What may be sent to the student's process: plain data, tensors (as copies), and handles to its own
    objects. The number of every tensor sent is added to `sent`."""
    if isinstance(value, Remote):
        return {"__grader_handle__": object.__getattribute__(value, "_grader_info")["__grader_handle__"]}
    if isinstance(value, torch.Tensor):
        number = f"g{next(_NUMBERS)}"
        if sent is not None:
            sent.append(number)
        return {"__grader_tensor__": value.detach().clone(), "requires_grad": value.requires_grad, "id": number}
    if type(value) in PLAIN:
        return value
    if isinstance(value, (list, tuple)):
        items = [encode(item, sent) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {str(key): encode(item, sent) for key, item in value.items()}
    raise TypeError(f"the grader cannot send a {type(value).__name__} to the student's code")


def decode(value: Any, channel: Channel) -> Any:
    """The student's answer, rebuilt from plain data: tensors, numpy arrays, containers and `Remote`s."""
    if isinstance(value, dict) and "__grader_handle__" in value:
        return remote_for(value, channel)
    if isinstance(value, dict) and "__grader_tensor__" in value:
        tensor = value["__grader_tensor__"].requires_grad_(bool(value.get("requires_grad")))
        if isinstance(value.get("grad"), torch.Tensor):
            tensor.grad = value["grad"]
        _MIRRORS[str(value.get("id"))] = weakref.ref(tensor)
        return tensor
    if isinstance(value, dict) and "__grader_numpy__" in value:
        return value["__grader_numpy__"].numpy()
    if isinstance(value, dict):
        return {key: decode(item, channel) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        items = [decode(item, channel) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def remote_error(answer: dict) -> Exception:
    """The student's exception, rebuilt by name (a builtin one as itself): its message and line come along."""
    name, message = str(answer.get("ename", "Exception")), str(answer.get("evalue", ""))
    kind = getattr(builtins, name) if name in KNOWN_ERRORS else type(name, (Exception,), {})
    error = kind(message)
    error.grader_line = str(answer.get("line", ""))
    return error


def ask(channel: Channel, payload: dict, timeout: float | None = None) -> Any:
    """One request; the answer's value, or the student's exception raised here."""
    answer = channel.request(payload, timeout)
    if not isinstance(answer, dict):
        raise RuntimeError("the student's notebook answered the grader with something it cannot read")
    mirror(answer.get("mirror"))
    if not answer.get("ok"):
        error = remote_error(answer)
        said = f"{type(error).__name__}: {error}"
        if any(words in said for words in REFUSED) and isinstance(getattr(channel, "observed", None), set):
            channel.observed.add(f"the sandbox refused what the student's code tried ({said.splitlines()[0][:160]})")
        raise error
    return answer


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _replace(value: Any, new: dict[int, torch.Tensor]) -> Any:
    """`value` with each tensor whose id is in `new` replaced."""
    if isinstance(value, torch.Tensor):
        return new.get(id(value), value)
    if isinstance(value, dict):
        return {key: _replace(item, new) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        items = [_replace(item, new) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


class _RemoteBackward(torch.autograd.Function):
    """Outputs computed in the student's process; their backward pass runs there too."""

    @staticmethod
    def forward(ctx, channel, number, count, anchor, *tensors):
        ctx.channel, ctx.number, ctx.count = channel, number, count
        return tuple(t.detach().clone() for t in tensors[count:])

    @staticmethod
    def backward(ctx, *grads):
        answer = ask(ctx.channel, {"op": "backward", "call": ctx.number, "grads": [encode(g) for g in grads]})
        inputs = [g if isinstance(g, torch.Tensor) else None for g in answer["value"]]
        return (None, None, None, None, *inputs, *([None] * len(grads)))


def _with_gradients(result: Any, inputs: list[torch.Tensor], channel: Channel, number: int) -> Any:
    carrying = [t for t in _tensors(result) if t.requires_grad]
    wanted = [t for t in inputs if t.requires_grad]  # each arrives as a leaf in the student's process
    if not carrying or not torch.is_grad_enabled():
        return result
    anchor = torch.zeros((), requires_grad=True)
    outputs = _RemoteBackward.apply(channel, number, len(wanted), anchor, *wanted, *carrying)
    return _replace(result, {id(old): new for old, new in zip(carrying, outputs)})


_CHANGED: set[str] = set()  # numbers of this process's tensors that the student's code changed in its copies


def mirror(changed) -> None:
    """Tensors the student's code returned and changed since (a returned buffer written into later) change
    here too, so that a check sees what the learner's code did. The grader's own tensors never change:
    a copy the student's code wrote into is only noted (`_CHANGED`), and every verdict is made on inputs
    the student's process never held."""
    for number, after in (changed or {}).items() if isinstance(changed, dict) else ():
        if str(number).startswith("g"):
            _CHANGED.add(str(number))
            continue
        tensor = _MIRRORS.get(str(number), lambda: None)()
        if tensor is None or not isinstance(after, torch.Tensor):
            continue
        with torch.no_grad():
            if after.shape == tensor.shape and after.dtype == tensor.dtype:
                tensor.copy_(after)
            else:
                tensor.data = after


def forget(channel: Channel) -> None:
    """A new check: the tensors of the last one need no mirroring any more."""
    _MIRRORS.clear()
    _CHANGED.clear()
    ask(channel, {"op": "forget"})


def _watches() -> list:
    """The checks' own torch modes active around a call (lesson 13 watches what the learner's operators make):
    they watch the call in the student's process, and what they saw comes back."""
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    modes = [*_get_current_function_mode_stack(), *_get_current_dispatch_mode_stack()]
    return [mode for mode in modes if type(mode).__module__.startswith("utils.checks")]


def _state(mode) -> dict:
    return {key: value for key, value in vars(mode).items() if type(value) in PLAIN or type(value) is tuple}


def _torch_class(name: str | None) -> type | None:
    """A class of torch's own, by "module:qualname" (only torch's: nothing of the student's is imported)."""
    if not name:
        return None
    module, _, qualname = name.partition(":")
    if module == "builtins" and qualname == "type":
        return type
    if not (module == "torch" or module.startswith("torch.")):
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


_CLASSES: dict[tuple, type] = {}
_SPECIALS = {
    "__len__": lambda self: int(self._special("__len__")),
    "__getitem__": lambda self, key: self._special("__getitem__", key),
    "__iter__": lambda self: iter(self._special("__list__")),
}


def remote_for(info: dict, channel: Channel) -> Remote:
    """A `Remote` for the student's object described by `info`, its class named as the student's is."""
    name = str(info.get("type", "object"))
    specials = tuple(sorted(s for s in info.get("specials") or () if s in _SPECIALS))
    body = {special: _SPECIALS[special] for special in specials}  # only what the student's class has
    kind = _CLASSES.setdefault((name, specials), type(name if name.isidentifier() else "object", (Remote,), body))
    remote = object.__new__(kind)
    object.__setattr__(remote, "_grader_info", info)
    object.__setattr__(remote, "_grader_channel", channel)
    return remote


class Remote:
    """Stands for one object in the student's process; see the module's docstring."""

    grader_remote = True

    def _grader(self, payload: dict, timeout: float | None = None) -> Any:
        info, channel = object.__getattribute__(self, "_grader_info"), object.__getattribute__(self, "_grader_channel")
        payload = {"target": info["__grader_handle__"], **payload}
        return channel, ask(channel, payload, timeout)

    def grader_call(self, time_limit: float | None, *args, **kwargs) -> Any:
        """Call the student's object with `args`, for a check's `_harness.call`: a `_harness._TimeUp` after
        `time_limit` seconds, and a `_harness.ChangedInPlace` naming what the student's code wrote into."""
        return self._call(time_limit, args, kwargs, report=True)

    def _call(self, time_limit: float | None, args: tuple, kwargs: dict, report: bool) -> Any:
        given = _tensors(list(args)) + _tensors(dict(kwargs))
        sent: list[list[str]] = [[] for _ in args]
        payload = {"op": "call", "args": tuple(encode(a, s) for a, s in zip(args, sent)), "kwargs": encode(kwargs)}
        payload["grad"] = torch.is_grad_enabled()
        watching = _watches()
        payload["watches"] = [
            {"module": type(m).__module__, "name": type(m).__qualname__, "state": _state(m)} for m in watching
        ]
        try:
            channel, answer = self._grader(payload, time_limit)
        except RemoteTimeout:
            raise _harness._TimeUp from None
        for position, numbers in enumerate(sent):
            if report and _CHANGED.intersection(numbers):
                raise _harness.ChangedInPlace(position)
        if report and _CHANGED:  # a tensor it was given in an earlier call
            _CHANGED.clear()
            raise _harness.ChangedInPlace(None)
        for mode, seen in zip(watching, answer.get("watches") or []):
            vars(mode).update({key: seen[key] for key in _state(mode) if key in seen})
        result = decode(answer.get("value"), channel)
        return _with_gradients(result, given, channel, answer.get("number", -1))

    def __call__(self, *args, **kwargs) -> Any:
        try:
            return self._call(None, args, kwargs, report=False)
        except _harness._TimeUp:
            raise TimeoutError("the student's code ran past the cell's time limit") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        channel, answer = self._grader({"op": "attribute", "name": name})
        return decode(answer.get("value"), channel)

    def __setattr__(self, name: str, value: Any) -> None:
        self._grader({"op": "attribute", "name": name, "set": encode(value)})

    def earlier_exercise(self, name: str) -> Any:
        """The student's `name`, if this object's code calls it (see `_harness.earlier_exercise`)."""
        channel, answer = self._grader({"op": "earlier", "name": name})
        return decode(answer.get("value"), channel)

    @property
    def __class__(self):  # what `isinstance` sees: torch's class the student's object is made from
        info = object.__getattribute__(self, "_grader_info")
        return _torch_class(info.get("torch_class")) or type(self)

    @property
    def __signature__(self) -> inspect.Signature | None:
        listed = object.__getattribute__(self, "_grader_info").get("signature")
        if not isinstance(listed, list):
            return None
        empty = inspect.Parameter.empty
        return inspect.Signature(
            [
                inspect.Parameter(str(n), inspect._ParameterKind(k), default=empty if d == "__empty__" else d)
                for n, k, d in listed
            ]
        )

    def _special(self, name: str, *args) -> Any:
        channel, answer = self._grader({"op": "special", "name": name, "args": encode(args)})
        return decode(answer.get("value"), channel)

    def __repr__(self) -> str:
        return str(object.__getattribute__(self, "_grader_info").get("repr", "<student object>"))

    def __bool__(self) -> bool:
        return True

    def __array__(self, *args, **kwargs):
        raise TypeError("a student's object is not an array")


def lookup(channel: Channel, name: str) -> Any:
    """The student's global `name` (a value or a `Remote`), or MISSING."""
    answer = ask(channel, {"op": "lookup", "name": name})
    return MISSING if answer.get("missing") else decode(answer.get("value"), channel)


__all__ = ["MISSING", "Channel", "KernelLost", "Remote", "RemoteTimeout", "decode", "encode", "lookup"]
