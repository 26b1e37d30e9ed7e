"""What the instructor and the students read: rows, feedback, the gradebook, the summary, a picture.

`score` turns what happened to each cell and check into one row per exercise. `write_outputs`
writes, in the output folder: `gradebook.csv` (a row per student, lesson and exercise),
`summary.csv` (a row per student), `class.png` (every student's score on every exercise),
`feedback/<student>/<lesson>.md`, and a `README.txt` that says which folder may go back to the
students (`executed/`, without hidden tests) and which may not (`instructor/`).
"""

from __future__ import annotations

import copy
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_output

from utils.instructor.grade.assemble import Plan

COLUMNS = ("student", "lesson", "exercise", "points", "max_points", "status", "message", "integrity")
STATUS_WORDS = {
    "passed": "passed",
    "failed": "the check failed",
    "hidden tests failed": "the hidden tests failed",
    "not attempted": "not attempted yet (the stub still raises NotImplementedError)",
    "missing": "not found in the notebook",
    "error": "an error stopped it",
    "timeout": "ran out of time",
    "kernel died": "the notebook's Python process died",
    "output limit": "printed more output than allowed",
    "unreadable": "the notebook file could not be read",
    "not submitted": "no notebook was submitted",
    "grader error": "the grader could not grade it",
}
UNREADABLE = (
    "this file is not a notebook Jupyter can read (it is cut short, or it is not a notebook's JSON). Open your "
    "notebook in Jupyter, save it (File > Save), and submit the .ipynb file it saved."
)
README = """What is in this folder (written by `python -m utils.grade`):

gradebook.csv   one row per student, lesson and exercise: points, status, message, integrity flags
summary.csv     one row per student: points per lesson, total, maximum, percent, integrity flags
class.png       every student's score on every exercise
feedback/       what each student reads: feedback/<student>/<lesson>.md (no hidden test in it)
executed/       the notebooks as graded, for the students: their cells and the visible checks' output,
                without the hidden tests: these may go back to the students
instructor/     the same notebooks with the hidden tests and their results: keep these to yourself
"""


@dataclass
class Row:
    student: str
    lesson: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str = ""
    integrity: list[str] = field(default_factory=list)


def first_line(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text or "").strip()


def _opening(source: str, lines: int = 2) -> str:
    shown = [line for line in source.splitlines() if line.strip()][:lines]
    return " / ".join(f"`{line.strip()[:80]}`" for line in shown) or "(empty)"


def where_it_stopped(plan: Plan, results: dict) -> str:
    """The cell (or the check) that was running when the kernel died or the notebook ran out of time."""
    cells = results.get("cells", {})
    stuck = [int(i) for i, entry in cells.items() if entry.get("started") and "status" not in entry]
    if stuck:
        index = max(stuck)
        owner = next((e.name for e in plan.exercises if e.cell == index), None)
        which = f"your cell for `{owner}`" if owner else "the lesson's set-up cell" if index == 0 else f"cell {index}"
        return f"it stopped in {which} (cell {index + 1} of the graded notebook), which begins {_opening(plan.notebook.cells[index].source)}"
    for name, verdict in results.get("checks", {}).items():
        if any(part == {} for part in verdict.values()):
            return f"it stopped while the check of `{name}` was calling your code"
    return ""


def _outcome(entry: dict | None) -> str:
    if entry is None:
        return "ok"
    return entry.get("status", "not run")


def score(student: str, lesson: str, plan: Plan, results: dict, stopped: str | None) -> list[Row]:
    """One row per exercise, from what its cell, its check and its hidden tests did."""
    cells, checks = results.get("cells", {}), results.get("checks", {})
    died = results.get("died") or stopped
    place = where_it_stopped(plan, results) if died else ""
    patched = [str(name) for name in results.get("patched") or []]
    flags = list(plan.integrity) + ([f"patched at run time: {', '.join(patched)}"] if patched else [])
    flags += [str(seen) for seen in results.get("observed") or []]
    rows = []
    for exercise in plan.exercises:
        own = cells.get(str(exercise.cell)) if exercise.cell is not None else None
        verdict = checks.get(exercise.name, {})
        check = verdict.get("check", {}) if exercise.check is not None else None
        hidden = verdict.get("hidden", {}) if exercise.hidden is not None else None
        row = Row(student, lesson, exercise.name, 0.0, exercise.points, "passed", integrity=list(flags))
        source = plan.notebook.cells[exercise.cell].source if exercise.cell is not None else ""
        row.status, row.message = _verdict(exercise.name, exercise.found, own, check, hidden, died, place)
        if row.status == "timeout" and own and own.get("ename") == "TimeoutError":
            row.message += f"; the cell begins {_opening(source)}"
        truncated = bool(own and own.get("truncated"))
        if row.status == "passed":
            row.points = exercise.points
            row.message = "passed; its output was cut at the output limit" if truncated else ""
        elif truncated and row.status in ("timeout", "error", "failed"):
            row.status, row.message = "output limit", "the output grew past the limit: " + row.message
        rows.append(row)
    return rows


def _verdict(name, found, own, check, hidden, died, place) -> tuple[str, str]:
    if not found:
        return "missing", f"no cell defines `{name}`: was it renamed or deleted?"
    stop = ("timeout" if died and "time" in died else "kernel died", "; ".join(p for p in (died, place) if p))
    if _outcome(check) == "not run":
        return stop if died else ("kernel died", "the notebook stopped before this check ran")
    if _outcome(check) == "error":
        return classify(name, own, check, place)
    if _outcome(hidden) == "not run":
        return stop if died else ("kernel died", "the notebook stopped before the hidden tests ran")
    if _outcome(hidden) == "error":
        return "hidden tests failed", f"hidden tests of `{name}` failed"
    return "passed", ""


def classify(name: str, own: dict | None, check: dict, place: str = "") -> tuple[str, str]:
    """What a failed check means, from the student's cell and the check's error."""
    ename, evalue = check.get("ename", ""), first_line(check.get("evalue", ""))
    own_error = own if own and own.get("status") == "error" else None
    if own_error and own_error.get("ename") == "TimeoutError":
        return "timeout", f"your `{name}` cell: {first_line(own_error['evalue'])}"
    if own_error and own_error.get("ename") != "NotImplementedError":
        return "error", f"your `{name}` cell raised {own_error['ename']}: {first_line(own_error['evalue'])}"
    if ename == "TimeoutError":
        return "timeout", evalue
    if ename == "NameError" and f"'{name}'" in evalue:
        return "missing", f"`{name}` is not defined: was it renamed?"
    if "not written yet" in evalue or ename == "NotImplementedError":
        return "not attempted", evalue
    if ename in ("CheckError", "AssertionError"):
        return "failed", evalue
    return "error", f"{ename}: {evalue}"


def feedback(student: str, lesson: str, rows: list[Row]) -> str:
    """What a student reads about one lesson."""
    earned, possible = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines = [f"# {lesson}: {earned:g} of {possible:g} points", ""]
    for row in rows:
        mark = "✔" if row.status == "passed" else "✘"
        words = STATUS_WORDS.get(row.status, row.status)
        lines.append(f"- {mark} `{row.exercise}` ({row.points:g}/{row.max_points:g}): {words}")
        if row.message:
            lines.extend("    " + line for line in row.message.splitlines())
    return "\n".join(lines) + "\n"


def executed_copies(plan: Plan, executed: nbformat.NotebookNode, results: dict) -> tuple:
    """The graded notebook twice: for the student (visible checks and what they printed), and for the
    instructor (the hidden tests and their results too)."""
    student, instructor = copy.deepcopy(executed), copy.deepcopy(executed)
    for exercise in sorted(plan.exercises, key=lambda e: -(e.cell or 0)):
        verdict = results.get("checks", {}).get(exercise.name, {})
        for notebook, parts in ((student, ("check",)), (instructor, ("check", "hidden"))):
            cells = [_judged_cell(getattr(exercise, p), verdict.get(p, {})) for p in parts if getattr(exercise, p)]
            at = (exercise.cell or 0) + 1
            notebook.cells[at:at] = cells
    return student, instructor


def _judged_cell(source: str, entry: dict) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    if entry.get("output"):
        cell.outputs.append(new_output("stream", name="stdout", text=entry["output"]))
    if entry.get("status") == "error":
        cell.outputs.append(new_output("error", ename=entry["ename"], evalue=entry["evalue"], traceback=[]))
    return cell


def write_outputs(rows: list[Row], out: Path) -> None:
    """The gradebook, the summary, the picture, every student's feedback, and the folder's README."""
    with open(out / "gradebook.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for r in rows:
            flags = "; ".join(r.integrity)
            writer.writerow(
                [r.student, r.lesson, r.exercise, f"{r.points:g}", f"{r.max_points:g}", r.status, r.message, flags]
            )
    write_summary(rows, out / "summary.csv")
    picture(rows, out / "class.png")
    for (student, lesson), group in _groups(rows).items():
        folder = out / "feedback" / student
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{lesson}.md").write_text(feedback(student, lesson, group))
    (out / "README.txt").write_text(README)


def _groups(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.student, row.lesson), []).append(row)
    return groups


def write_summary(rows: list[Row], path: Path) -> None:
    """One row per student: points per lesson, total, maximum, percent, and the integrity flags."""
    students, lessons = sorted({r.student for r in rows}), sorted({r.lesson for r in rows})
    groups = _groups(rows)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", *lessons, "total", "maximum", "percent", "integrity"])
        for student in students:
            mine = [r for r in rows if r.student == student]
            total, most = sum(r.points for r in mine), sum(r.max_points for r in mine)
            per_lesson = [f"{sum(r.points for r in groups.get((student, lesson), [])):g}" for lesson in lessons]
            flags = sorted({f"{r.lesson}: {flag}" for r in mine for flag in r.integrity})
            percent = f"{100 * total / most:.1f}" if most else "0.0"
            writer.writerow([student, *per_lesson, f"{total:g}", f"{most:g}", percent, "; ".join(flags)])


def picture(rows: list[Row], path: Path) -> None:
    """A PNG of the class: one row per student, one column per exercise, coloured by the share of its points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    students = sorted({r.student for r in rows})
    exercises = list(dict.fromkeys((r.lesson, r.exercise) for r in rows))
    scores = np.full((len(students), len(exercises)), np.nan)
    for r in rows:
        if r.max_points:
            scores[students.index(r.student), exercises.index((r.lesson, r.exercise))] = r.points / r.max_points
    figure, axes = plt.subplots(figsize=(3 + 0.45 * len(exercises), 3 + 0.3 * len(students)), layout="constrained")
    image = axes.imshow(scores, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(
        range(len(exercises)), [f"{lesson[:2]} {name}" for lesson, name in exercises], rotation=60, ha="right"
    )
    axes.set_yticks(range(len(students)), students)
    axes.set_title("Share of each exercise's points, per student")
    figure.colorbar(image, ax=axes, shrink=0.8)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_summary(rows: list[Row], seconds: float, notebooks: int) -> None:
    students = sorted({r.student for r in rows})
    lessons = sorted({r.lesson for r in rows})
    width = max([len(s) for s in students] + [7])
    print()
    print(f"{'student':<{width}}  " + "  ".join(f"{lesson[:2]:>7}" for lesson in lessons) + "    total  integrity")
    for student in students:
        cells, total, possible, flagged = [], 0.0, 0.0, False
        for lesson in lessons:
            group = [r for r in rows if r.student == student and r.lesson == lesson]
            earned, most = sum(r.points for r in group), sum(r.max_points for r in group)
            total, possible = total + earned, possible + most
            flagged = flagged or any(r.integrity for r in group)
            cells.append(f"{earned:g}/{most:g}")
        mark = "  flagged" if flagged else ""
        print(f"{student:<{width}}  " + "  ".join(f"{c:>7}" for c in cells) + f"  {f'{total:g}/{possible:g}':>7}{mark}")
    print(f"\ngraded {notebooks} notebooks of {len(students)} students in {seconds:.1f} s")
