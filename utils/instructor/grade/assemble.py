"""What the grader runs for one submission, and what it noticed about the file.

The student's kernel runs a notebook made of the instructor's set-up cell, the lesson's
`graded-context` cells, and the student's exercise cells (found by nbgrader `grade_id`, else by
the `def`/`class` that defines the exercise). Nothing else of the submission runs; the checks
and hidden tests are the instructor's, kept here to run in the trusted grader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from utils.instructor import build


@dataclass
class Exercise:
    """One graded exercise: its points, its cell in the student's notebook, and the instructor's checks."""

    name: str
    points: float
    cell: int | None = None  # index in the student's notebook of the student's exercise cell
    check: str | None = None  # the instructor's check cell (its visible part)
    hidden: str | None = None  # the instructor's hidden tests, if any
    found: bool = True


@dataclass
class Plan:
    """The notebook the student's kernel runs, the exercises the grader checks, and what it noticed."""

    notebook: nbformat.NotebookNode
    exercises: list[Exercise] = field(default_factory=list)
    imports: str = ""  # the set-up and context cells' imports, for the trusted checks' namespace
    integrity: list[str] = field(default_factory=list)


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^(def|class)\s+{re.escape(name)}\b", source, re.MULTILINE) is not None


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def student_cell(submission: nbformat.NotebookNode, name: str) -> str | None:
    """The source of the student's cell for exercise `name`: by grade_id, else by its definition."""
    code = [cell for cell in submission.cells if cell.get("cell_type") == "code"]
    tagged = [c for c in code if _grade_id(c) == name]
    defining = [c for c in tagged if _defines(c.source, name)] or tagged
    if not defining:
        defining = [c for c in code if _defines(c.source, name)]
    return defining[-1].source if defining else None  # of duplicates, the last one is the latest


def split_hidden(source: str) -> tuple[str, str | None]:
    """A check cell's visible part and its hidden tests (None when it has none)."""
    if build.BEGIN_HIDDEN not in source:
        return source, None
    visible = build.strip_solutions(source, "check cell")
    hidden = source.split(build.BEGIN_HIDDEN, 1)[1].split(build.END_HIDDEN, 1)[0]
    return visible, hidden


def imports_of(source: str) -> str:
    """The import statements of a cell (top level), to give the trusted checks the lesson's names."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    kept = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(ast.unparse(node) for node in kept)


def assemble(instructor: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> Plan:
    """The student's notebook to run (set-up, context, the student's exercise cells) and the checks to judge it."""
    setup = next(cell for cell in instructor.cells if cell.cell_type == "code")
    context = [c for c in instructor.cells if "graded-context" in c.metadata.get("tags", [])]
    cells = [new_code_cell(setup.source)] + [new_code_cell(c.source) for c in context]
    plan = Plan(new_notebook(), imports="\n".join(imports_of(c.source) for c in [setup, *context]))
    for cell in instructor.cells:
        meta = cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}
        if meta.get("solution"):
            source = student_cell(submission, meta["grade_id"])
            plan.exercises.append(Exercise(meta["grade_id"], 0.0, len(cells), found=source is not None))
            cells.append(new_code_cell(source if source is not None else "pass  # no cell defines this exercise"))
        elif meta.get("grade"):
            target = meta["grade_id"].removeprefix("check_")
            exercise = next((e for e in plan.exercises if e.name == target), None)
            if exercise is not None:
                exercise.points = float(meta.get("points", 0))
                exercise.check, exercise.hidden = split_hidden(cell.source)
    plan.notebook = new_notebook(cells=cells, metadata={"kernelspec": instructor.metadata.get("kernelspec", {})})
    plan.integrity = integrity(instructor, submission, plan)
    return plan


def integrity(instructor: nbformat.NotebookNode, submission: nbformat.NotebookNode, plan: Plan) -> list[str]:
    """What the submission did to the instructor's check cells (flags, not verdicts).

    The file is only read, never guessed at: what a student's code does is seen while it runs (the
    grader's own observations: a stand-in missing, a call out of time, the serving function silenced,
    the sandbox refusing something, what the kernel found replaced), not matched against patterns,
    which flag innocent code and miss the obvious patch."""
    flags = []
    code = [c for c in submission.cells if c.get("cell_type") == "code"]
    theirs = {_grade_id(c): c.get("source", "") for c in code if _grade_id(c)}
    for cell in instructor.cells:
        meta = cell.metadata.get("nbgrader", {}) if cell.cell_type == "code" else {}
        if meta.get("grade") and not meta.get("solution"):
            visible, _ = split_hidden(cell.source)
            as_given = (visible.strip(), cell.source.strip())
            if meta["grade_id"] in theirs and theirs[meta["grade_id"]].strip() not in as_given:
                flags.append(f"check `{meta['grade_id']}` edited")
            elif meta["grade_id"] not in theirs and not any(c.get("source", "").strip() in as_given for c in code):
                flags.append(f"check `{meta['grade_id']}` deleted")  # neither its grade_id nor its code is there
    return flags
