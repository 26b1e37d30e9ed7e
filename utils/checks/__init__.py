"""`check_<exercise>(your_function)` for every exercise of the course.

Each check tries the learner's code on random inputs of several shapes, compares
it with properties and with PyTorch's own operators, prints one line when it is
right, and raises `AssertionError` saying what is wrong, in the learner's terms,
when it is not. The checks of lesson NN live in `utils/checks/lessonNN.py`; every
`check_*` there is available here.
"""

import importlib
import pkgutil

from utils.checks._harness import blames_earlier

__all__: list[str] = []

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name.startswith("lesson")):
    _lesson = importlib.import_module(f"{__name__}.{_module}")
    for _name in dir(_lesson):
        _value = getattr(_lesson, _name)
        if _name.startswith("check_") and getattr(_value, "__module__", None) == _lesson.__name__:
            _check = blames_earlier(_value)  # a wrong earlier exercise is named only if this fails
            setattr(_lesson, _name, _check)
            globals()[_name] = _check
            __all__.append(_name)

__all__.sort()
