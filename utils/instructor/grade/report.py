"""What the instructor and the students read: rows, feedback, the gradebook, the summary, a picture.

`score` turns what happened to each cell and check into one row per exercise. `write_outputs`
writes, in the output folder: `gradebook.csv` (a row per student, lesson and exercise) and the
same rows as `gradebook.json` (what a later run or a merge reads back), `summary.csv` (a row per
student, for an LMS), `class.png` (every student's result on every exercise),
`feedback/<student>/<lesson>.md`, and a `README.txt` that says which folder may go back to the
students (`executed/`, without hidden tests) and which may not (`instructor/`).

Nothing is lost on the way: every file is written under a temporary name and all of them are put
in place together once all are complete (`Staging`), and `combine` updates an earlier gradebook
with the students and lessons graded now, keeping every other row. A CSV cell that a spreadsheet
would run as a formula gets a leading `'` (`csv_cell`).
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_output

from utils.instructor.grade.assemble import Plan

COLUMNS = ("student", "lesson", "exercise", "points", "max_points", "status", "message", "integrity", "file", "notes")
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
    "refused": "the grader did not read the file",
    "not submitted": "no notebook was submitted",
    "grader error": "the grader could not grade it",
}
UNREADABLE = (
    "this file is not a notebook Jupyter can read (it is cut short, or it is not a notebook's JSON). Open your "
    "notebook in Jupyter, save it (File > Save), and submit the .ipynb file it saved."
)
README = """What is in this folder (written by `python -m utils.grade`):

gradebook.csv   one row per student, lesson and exercise: points, status, message, integrity flags,
                the file graded and notes (a file matched under another name, an older copy left out)
gradebook.json  the same rows, which a later run (--student, late submissions) and a merge read back
summary.csv     one row per student (the folder's name): points per lesson, total, maximum, percent,
                integrity flags; ready for an LMS import
class.png       every student's result on every exercise: passed, failed, not attempted, not
                submitted, refused; "!" marks an integrity flag
shard.json      only in a shard's folder (--shard i/n): which share of the class it holds, for merge
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
    file: str = ""  # the file graded, as named in the student's folder
    notes: list[str] = field(default_factory=list)  # about the submission: a renamed file, an older copy, ...


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
    graded = next((r.file for r in rows if r.file), "")
    if graded and graded != f"{lesson}.ipynb":
        lines += [f"Graded from your file `{graded}`.", ""]
    notes = list(dict.fromkeys(note for r in rows for note in r.notes))
    if notes:
        lines += [f"Note: {note}" for note in notes] + [""]
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


# --- the files: escaped, written whole, and updated rather than replaced -----------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula (OWASP's list)
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
NOT_SUBMITTED = "no notebook was submitted"


def csv_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows and never runs: text that begins like a formula gets a
    leading `'`; numbers stay numbers."""
    text = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    if text.startswith(FORMULA_STARTS) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(header: tuple[str, ...] | list[str], rows: list[list]) -> str:
    """A CSV file's text, every cell through `csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in [list(header), *rows]:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Staging:
    """New files written under temporary names beside where they go, and put in place together when the
    block ends without an error: until then, and if anything fails, the earlier files stay as they were."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, Path]] = []

    def write(self, path: Path, data: str | bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        self.pending.append((temporary, path))
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(temporary, 0o666 & ~_umask())  # as an ordinary file, not mkstemp's 0600

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, kind, *rest) -> None:
        if kind is None:
            for temporary, path in self.pending:
                os.replace(temporary, path)
        else:
            for temporary, _ in self.pending:
                Path(temporary).unlink(missing_ok=True)
        self.pending = []


def write_file(path: Path, data: str | bytes) -> None:
    """Write one file whole: a reader sees the old one or the new one, never a part."""
    with Staging() as staging:
        staging.write(path, data)


def sort_rows(rows: list[Row]) -> list[Row]:
    """By student, then lesson; a lesson's exercises keep their order."""
    return sorted(rows, key=lambda r: (r.student, r.lesson))


def read_rows(out: Path) -> list[Row]:
    """The rows an earlier run wrote into `out` ([] if none): its gradebook.json, else an older grader's CSV."""
    names = set(Row.__dataclass_fields__)
    if (out / "gradebook.json").is_file():
        data = json.loads((out / "gradebook.json").read_text(encoding="utf-8"))
        return [Row(**{k: v for k, v in row.items() if k in names}) for row in data["rows"]]
    if (out / "gradebook.csv").is_file():  # written before gradebook.json existed, and never escaped
        with open(out / "gradebook.csv", newline="", encoding="utf-8") as file:
            return [
                Row(
                    r["student"],
                    r["lesson"],
                    r["exercise"],
                    float(r["points"]),
                    float(r["max_points"]),
                    r["status"],
                    r.get("message") or "",
                    [flag for flag in (r.get("integrity") or "").split("; ") if flag],
                    r.get("file") or "",
                    [note for note in (r.get("notes") or "").split("; ") if note],
                )
                for r in csv.DictReader(file)
            ]
    return []


def combine(earlier: list[Row], new: list[Row]) -> list[Row]:
    """An earlier gradebook updated with the rows graded now. A student's lesson graded now replaces its
    earlier rows; a lesson not submitted now keeps an earlier grade; every other row stays."""
    kept = _groups(earlier)
    for pair, rows in _groups(new).items():
        absent_now = all(r.status == "not submitted" for r in rows)
        if absent_now and pair in kept and not all(r.status == "not submitted" for r in kept[pair]):
            continue
        kept[pair] = rows
    return sort_rows([row for rows in kept.values() for row in rows])


def complete(rows: list[Row], exercises: Callable[[str], list[tuple[str, float]]]) -> list[Row]:
    """Every student with rows for every lesson of the gradebook: a lesson missing is "not submitted".
    `exercises(lesson)` gives that lesson's exercises and their points."""
    groups = _groups(rows)
    students, lessons = sorted({r.student for r in rows}), sorted({r.lesson for r in rows})
    added = [
        Row(student, lesson, name, 0.0, points, "not submitted", NOT_SUBMITTED)
        for student in students
        for lesson in lessons
        if (student, lesson) not in groups
        for name, points in exercises(lesson)
    ]
    return sort_rows(rows + added)


def gradebook_text(rows: list[Row]) -> str:
    cells = [
        [r.student, r.lesson, r.exercise, r.points, r.max_points, r.status, r.message]
        + ["; ".join(r.integrity), r.file, "; ".join(r.notes)]
        for r in rows
    ]
    return csv_text(COLUMNS, cells)


def write_outputs(rows: list[Row], out: Path, extra: dict[str, str | bytes] | None = None) -> None:
    """The gradebook (CSV and JSON), the summary, the picture, every student's feedback, the folder's README,
    and any `extra` files, all put in place together."""
    out.mkdir(parents=True, exist_ok=True)
    document = {"columns": list(COLUMNS), "rows": [asdict(r) for r in rows]}
    with Staging() as staging:
        staging.write(out / "gradebook.csv", gradebook_text(rows))
        staging.write(out / "gradebook.json", json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        staging.write(out / "summary.csv", summary_text(rows))
        staging.write(out / "class.png", picture_bytes(rows))
        for (student, lesson), group in _groups(rows).items():
            staging.write(out / "feedback" / student / f"{lesson}.md", feedback(student, lesson, group))
        staging.write(out / "README.txt", README)
        for name, data in (extra or {}).items():
            staging.write(out / name, data)


def _groups(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.student, row.lesson), []).append(row)
    return groups


def summary_text(rows: list[Row]) -> str:
    """One row per student (the folder's name, as an LMS knows the student): points per lesson, total,
    maximum, percent, and the integrity flags."""
    students, lessons = sorted({r.student for r in rows}), sorted({r.lesson for r in rows})
    groups = _groups(rows)
    lines = []
    for student in students:
        mine = [r for r in rows if r.student == student]
        total, most = sum(r.points for r in mine), sum(r.max_points for r in mine)
        per_lesson = [sum(r.points for r in groups.get((student, lesson), [])) for lesson in lessons]
        flags = sorted({f"{r.lesson}: {flag}" for r in mine for flag in r.integrity})
        percent = f"{100 * total / most:.1f}" if most else "0.0"
        lines.append([student, *per_lesson, total, most, percent, "; ".join(flags)])
    return csv_text(["student", *lessons, "total", "maximum", "percent", "integrity"], lines)


def write_summary(rows: list[Row], path: Path) -> None:
    write_file(path, summary_text(rows))


# What the class picture shows for each status: a colour of Okabe and Ito's palette (told apart with any
# colour vision) and a hatch (told apart in grey).
CATEGORIES = (
    ("passed", ("passed",), "#0072B2", ""),
    (
        "failed (a check, the hidden tests, an error, time, ...)",
        ("failed", "hidden tests failed", "error", "timeout", "kernel died", "output limit", "missing"),
        "#D55E00",
        "\\\\\\\\",
    ),
    ("not attempted (the stub is still there)", ("not attempted",), "#F0E442", "...."),
    ("not submitted", ("not submitted",), "#FFFFFF", "////"),
    ("refused, unreadable, or not graded", ("refused", "unreadable", "grader error"), "#CC79A7", "xxxx"),
)


def category(status: str) -> int:
    """Which of `CATEGORIES` a status falls in (the last one for any status it does not name)."""
    return next((k for k, (_, statuses, _, _) in enumerate(CATEGORIES) if status in statuses), len(CATEGORIES) - 1)


def picture_bytes(rows: list[Row]) -> bytes:
    """A PNG of the class: one row per student, one column per exercise, a colour and a hatch for what
    happened to it, "!" where the notebook raised an integrity flag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    students = sorted({r.student for r in rows})
    exercises = list(dict.fromkeys((r.lesson, r.exercise) for r in sorted(rows, key=lambda r: r.lesson)))
    width, height = 4 + 0.45 * len(exercises), 3.2 + 0.32 * len(students)
    figure, axes = plt.subplots(figsize=(max(width, 8), height), layout="constrained")
    for r in rows:
        x, y = exercises.index((r.lesson, r.exercise)), students.index(r.student)
        _, _, colour, hatch = CATEGORIES[category(r.status)]
        axes.add_patch(
            Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=colour, hatch=hatch, edgecolor="#444444", linewidth=0.5)
        )
        if r.integrity:
            axes.scatter([x], [y], s=150, marker="o", facecolor="white", edgecolor="black", linewidth=0.8, zorder=2)
            axes.text(x, y, "!", ha="center", va="center", fontsize=10, fontweight="bold", color="black", zorder=3)
    for k in range(1, len(exercises)):
        if exercises[k][0] != exercises[k - 1][0]:
            axes.axvline(k - 0.5, color="black", linewidth=1.5)
    axes.set_xlim(-0.5, max(len(exercises), 1) - 0.5)
    axes.set_ylim(max(len(students), 1) - 0.5, -0.5)
    axes.set_xticks(
        range(len(exercises)), [f"{lesson[:2]} {name}" for lesson, name in exercises], rotation=60, ha="right"
    )
    totals = {s: sum(r.points for r in rows if r.student == s) for s in students}
    possible = {s: sum(r.max_points for r in rows if r.student == s) for s in students}
    labels = [f"{s} ({100 * totals[s] / possible[s]:.0f}%)" if possible[s] else s for s in students]
    axes.set_yticks(range(len(students)), labels)
    axes.set_title("Each student's result on each exercise" if rows else "No student graded")
    handles = [Patch(facecolor=c, hatch=h, edgecolor="#444444", label=label) for label, _, c, h in CATEGORIES]
    handles.append(
        Line2D([], [], marker="$!$", markersize=9, color="black", linestyle="", label="integrity flag (summary.csv)")
    )
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def picture(rows: list[Row], path: Path) -> None:
    write_file(path, picture_bytes(rows))


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
