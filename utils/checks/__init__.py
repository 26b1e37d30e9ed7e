"""`check_<exercise>(your_function)` for every exercise of the course.

Each check tries the learner's code on random inputs of several shapes, compares
it with properties and with PyTorch's own operators, prints one line when it is
right, and raises `AssertionError` saying what is wrong, in the learner's terms,
when it is not. The checks of lesson NN live in `utils/checks/lessonNN.py`; every
`check_*` there is available here.
"""

import importlib
import pkgutil

__all__: list[str] = []

for _module in sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name.startswith("lesson")):
    _lesson = importlib.import_module(f"{__name__}.{_module}")
    for _name in dir(_lesson):
        if _name.startswith("check_"):
            globals()[_name] = getattr(_lesson, _name)
            __all__.append(_name)

__all__.sort()
