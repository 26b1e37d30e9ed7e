"""Run the code of a lesson notebook outside Jupyter: its exercise definitions, or its
checks, so that tests can use the solutions as right answers and the stubs as wrong ones."""

from __future__ import annotations

import linecache
from pathlib import Path

import nbformat

from utils import course

PRELUDE = """
import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from utils import checks

try:  # lesson 13's Triton kernels (Triton installs on Linux only)
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None
HAVE_TRITON = triton is not None
"""


def run_source(source: str, filename: str, namespace: dict) -> None:
    """Execute a cell's source as the file `filename`, its lines findable by `inspect` (as
    Jupyter's are): `@triton.jit` reads the source of the function it decorates, and Triton's
    interpreter reads it again at each launch, so `filename` must name this one cell of this file."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def graded_cells(notebook: nbformat.NotebookNode, *, solution: bool):
    """The exercise cells (solution=True) or check cells (solution=False), by grade_id."""
    cells = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") is solution and (solution or meta.get("grade")):
            cells[meta["grade_id"]] = cell
    return cells


def definitions(path: Path) -> dict:
    """Every exercise of a notebook, defined as the grader defines them: the cells tagged `graded-context`
    (helpers the exercises call, such as lesson 14's `tiled_forward`), then the exercise cells (in order)."""
    namespace: dict = {}
    exec(PRELUDE, namespace)
    notebook = read(path)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and "graded-context" in cell.metadata.get("tags", []):
            run_source(cell.source, f"{path}:context-{index}", namespace)
    for grade_id, cell in graded_cells(notebook, solution=True).items():
        run_source(cell.source, f"{path}:{grade_id}", namespace)
    return namespace


def solution(stem: str) -> dict:
    """The instructor's definitions of a lesson's exercises."""
    return definitions(course.SOLUTIONS / f"{stem}.ipynb")


def run_check(path: Path, check_id: str, namespace: dict) -> None:
    """Run one check cell of a notebook in `namespace`."""
    cell = graded_cells(read(path), solution=False)[check_id]
    run_source(cell.source, f"{path}:{check_id}", namespace)
