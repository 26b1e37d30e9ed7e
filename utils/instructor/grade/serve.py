"""The student's side of a check: run in the student's kernel, never in the grader.

The grader sends this file's source to the kernel before the student's cells. It defines
one function, `__grader_serve(request)`: read a request the trusted grader sent in the code of
the cell itself (`torch.load(..., weights_only=True)` of its bytes), do it to the student's
objects (call, get or set an attribute, look up a name, run a backward pass), and answer with
plain data (tensors, numbers, strings and lists, tuples and dicts of them) as a display of the
kernel's own messages, never through a file. Anything else stays here and goes back as a
handle, a number the grader uses to ask about it later.

A student can replace or break this function: the grader then reads wrong data, or nothing,
and the check fails. It cannot make a check pass, because the verdict is computed elsewhere.
"""


def __grader_install():  # noqa: N807 (a name no lesson uses)
    import base64
    import contextlib
    import importlib
    import inspect
    import io
    import traceback
    import types

    import numpy
    import torch
    from IPython import get_ipython

    shell = get_ipython()
    published = shell.display_pub.publish if shell is not None else None

    namespace = globals()  # the notebook's: this runs where the grader execs it, in the student's kernel
    handles: dict = {}  # number -> object kept for the grader
    graphs: dict = {}  # call number -> (outputs that carry gradients, inputs that want them)
    tracked: dict = {}  # tensor number -> (the tensor, a copy of it as the grader last saw it)
    plain_types = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)

    def keep(value) -> dict:
        number = len(handles) + 1
        handles[number] = value
        torch_class = next((c for c in type(value).__mro__ if c.__module__.startswith("torch")), None)
        if isinstance(value, type):
            torch_class = type
        try:
            signature = [
                (p.name, int(p.kind), encode(p.default) if p.default is not p.empty else "__empty__")
                for p in inspect.signature(value).parameters.values()
            ]
        except Exception:
            signature = None
        return {
            "__grader_handle__": number,
            "type": type(value).__name__ if not isinstance(value, type) else value.__name__,
            "torch_class": f"{torch_class.__module__}:{torch_class.__qualname__}" if torch_class else None,
            "callable": callable(value),
            "signature": signature,
            "repr": repr(value)[:300],
            "specials": [name for name in ("__len__", "__getitem__", "__iter__") if hasattr(type(value), name)],
        }

    def encode_tensor(value):
        tensor = value.detach().as_subclass(torch.Tensor).clone()
        grad = value.grad if value.is_leaf else None
        number = f"s{len(tracked)}"
        track(number, value)
        return {"__grader_tensor__": tensor, "requires_grad": value.requires_grad, "grad": grad, "id": number}

    def track(number: str, tensor) -> None:
        """Remember a tensor that crossed to the grader, so that a later change to it crosses too."""
        tracked[number] = (tensor, tensor.detach().clone())

    def changes() -> dict:
        """The tensors that crossed and have changed since (the grader's copies change the same way)."""
        changed = {}
        for number, (tensor, before) in list(tracked.items()):
            now = tensor.detach()
            same = now.shape == before.shape and now.dtype == before.dtype
            if not (same and bool(((now == before) | (now.isnan() & before.isnan())).all())):
                changed[number] = now.as_subclass(torch.Tensor).clone()
                track(number, tensor)
        return changed

    def encode(value):
        if isinstance(value, torch.Tensor):
            return encode_tensor(value)
        if type(value) in plain_types:
            return value
        if isinstance(value, numpy.ndarray) and value.dtype != object:
            return {"__grader_numpy__": torch.from_numpy(numpy.ascontiguousarray(value).copy())}
        if isinstance(value, numpy.generic):
            return value.item()
        if isinstance(value, (list, tuple)):  # named tuples and torch.return_types become plain tuples
            items = [encode(item) for item in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, dict) and all(type(key) is str for key in value):
            return {key: encode(item) for key, item in value.items()}
        if isinstance(value, types.GeneratorType):
            return [encode(item) for item in value]
        return keep(value)

    def decode(value):
        if isinstance(value, dict) and "__grader_handle__" in value:
            return handles[value["__grader_handle__"]]
        if isinstance(value, dict) and "__grader_tensor__" in value:
            tensor = value["__grader_tensor__"].clone().requires_grad_(value["requires_grad"])  # resizable
            track(value["id"], tensor)
            return tensor
        if isinstance(value, dict):
            return {key: decode(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            items = [decode(item) for item in value]
            return items if isinstance(value, list) else tuple(items)
        return value

    def call(request: dict):
        target = handles[request["target"]]
        args, kwargs = decode(request["args"]), decode(request["kwargs"])
        if request.get("method"):
            target = getattr(target, request["method"])
        given = _tensors(args) + _tensors(kwargs)
        modes = [watch(w) for w in request.get("watches", [])]
        with torch.set_grad_enabled(request["grad"]), contextlib.ExitStack() as stack:
            for mode in modes:
                stack.enter_context(mode)
            result = target(*args, **kwargs)
        wanted = [t for t in given if t.requires_grad and t.is_leaf]
        carrying = [t for t in _tensors(result) if t.requires_grad]
        if carrying:
            graphs[request["number"]] = (carrying, wanted)
        seen = [{k: v for k, v in vars(mode).items() if type(v) in plain_types or type(v) is tuple} for mode in modes]
        return {"value": encode(result), "watches": seen}

    def watch(request: dict):
        """A check's watch (a torch mode of `utils.checks`) with the grader's state, to run around the call here."""
        module = importlib.import_module(request["module"])
        if not module.__name__.startswith("utils.checks"):
            raise ValueError("only the checks' own watches")
        kind = getattr(module, request["name"])
        mode = kind.__new__(kind)
        super(kind, mode).__init__()
        vars(mode).update(request["state"])
        return mode

    def _tensors(value) -> list:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            return [t for item in value for t in _tensors(item)]
        return []

    def backward(request: dict):
        outputs, inputs = graphs[request["call"]]
        grads = decode(request["grads"])
        for tensor in inputs:
            tensor.grad = None  # this backward pass's gradients only, however many passes ran before
        pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs], retain_graph=True)
        return {"value": [t.grad for t in inputs]}

    def lookup(request: dict):
        name = request["name"]
        if name not in namespace:
            return {"missing": True}
        value = namespace[name]
        if request.get("only_callable") and not callable(value):
            return {"missing": True}
        return {"value": encode(value)}

    def attribute(request: dict):
        target = handles[request["target"]]
        if "set" in request:
            setattr(target, request["name"], decode(request["set"]))
            return {"value": None}
        return {"value": encode(getattr(target, request["name"]))}

    def earlier(request: dict):
        """The student's `name` if the code of handle `target` refers to it (as `_harness.earlier_exercise`)."""
        target = handles[request["target"]]
        functions = [target] if isinstance(target, types.FunctionType) else []
        if isinstance(target, type):
            members = (getattr(m, "__func__", m) for m in vars(target).values())
            functions = [m for m in members if isinstance(m, types.FunctionType)]
        names, stack = set(), [f.__code__ for f in functions]
        while stack:
            code = stack.pop()
            names.update(code.co_names)
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        found = functions[0].__globals__.get(request["name"]) if functions and request["name"] in names else None
        return {"value": encode(found) if callable(found) else None}

    import builtins
    import sys

    watched = {
        "torch.allclose": lambda: torch.allclose,
        "torch.equal": lambda: torch.equal,
        "torch.isclose": lambda: torch.isclose,
        "torch.testing.assert_close": lambda: torch.testing.assert_close,
        "importlib.import_module": lambda: importlib.import_module,
        "builtins.__import__": lambda: builtins.__import__,
        "builtins.AssertionError": lambda: builtins.AssertionError,
        "builtins.isinstance": lambda: builtins.isinstance,
    }
    originals = {name: get() for name, get in watched.items()}
    try:
        checks = importlib.import_module("utils.checks")  # before any student cell: the checks as shipped
    except Exception:
        checks = None
    shipped = {name: value for name, value in vars(checks or sys).items() if name.startswith("check_")}

    def patched(request: dict):
        """What the notebook's code replaced since the grader started (a flag for the instructor, not a verdict)."""
        seen = [name for name, get in watched.items() if get() is not originals[name]]
        module = sys.modules.get("utils.checks")
        if checks is not None and module is not checks:
            seen.append("sys.modules['utils.checks']")
        seen += [f"utils.checks.{name}" for name, value in shipped.items() if vars(checks).get(name) is not value]
        return {"value": seen}

    operations = {"call": call, "backward": backward, "lookup": lookup, "attribute": attribute, "earlier": earlier}
    operations["patched"] = patched
    operations["forget"] = lambda request: tracked.clear() or {"value": None}

    def special(request: dict):
        """`len(x)`, `x[key]`, `list(x)` of a student's object."""
        target, name = handles[request["target"]], request["name"]
        if name == "__getitem__":
            return {"value": encode(target[decode(request["args"])[0]])}
        return {"value": encode(len(target) if name == "__len__" else list(target))}

    operations["special"] = special

    def serve(asked: str, publish=published) -> None:
        request = torch.load(io.BytesIO(base64.b64decode(asked)), weights_only=True)
        try:
            answer = operations[request["op"]](request)
            answer["ok"] = True
        except BaseException as error:  # the student's error, told to the grader as data
            answer = {"ok": False, "ename": type(error).__name__, "evalue": str(error)[:2000], "line": _line(error)}
        answer["mirror"] = changes()
        buffer = io.BytesIO()
        torch.save(answer, buffer)
        publish({"application/x-grader-answer": base64.b64encode(buffer.getvalue()).decode("ascii")})

    def _line(error: BaseException) -> str:
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            name = frame.filename or ""
            if "site-packages" in name or "/torch/" in name or name.endswith("serve.py") or name == "<grader>":
                continue
            if frame.line:
                return frame.line.strip()
        return ""

    return serve


__grader_serve = __grader_install()  # noqa: N816
del __grader_install
