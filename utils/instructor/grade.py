"""Grade a class: run every submitted notebook against the instructor's checks.

    python -m utils.grade SUBMISSIONS --out DIR [--workers 2] [--cell-timeout 60]
                                                [--notebook-timeout 600] [--memory-mb 4096]

SUBMISSIONS holds one folder per student, named for the student, with any of the
lesson notebooks as the learner saved them (the file names of `notebooks/`).

For each notebook the grader assembles what it runs from the instructor's lesson in
`solutions/`: the set-up cell, then for each exercise the student's exercise cell
(found by its nbgrader `grade_id`, else by the `def`/`class` that defines it), the
instructor's check cell, and the instructor's hidden tests. Whatever the student did
to the other cells (edited, deleted, reordered, duplicated them, or blanked a check)
changes nothing; `utils.checks` is reloaded from disk before every check.

Each notebook runs in a fresh kernel in its own process, with limits on time per cell
and per notebook, on memory and on output. Results are kept cell by cell, so the
exercises that ran before a crash keep their points. The grader writes
`DIR/gradebook.csv`, feedback under `DIR/feedback/<student>/`, the executed notebooks
under `DIR/executed/<student>/`, and prints a summary. It exits 0 once it has graded,
whatever the students submitted; 2 for its own usage errors.

Running a submission runs untrusted code: for a real class, run the grader in a
container or a throwaway virtual machine (see the README).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from utils import course
from utils.instructor import build

FRESH_CHECKS = (
    "import importlib as _importlib, sys as _sys\n"
    "for _name in [_m for _m in _sys.modules if _m == 'utils.checks' or _m.startswith('utils.checks.')]:\n"
    "    del _sys.modules[_name]\n"
    "checks = _importlib.import_module('utils.checks')  # the instructor's checks, fresh from disk\n"
)
COLUMNS = ("student", "lesson", "exercise", "points", "max_points", "status", "message")
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


# ----------------------------------------------------------------------------- assembling


@dataclass
class Exercise:
    name: str
    points: float
    cell: int | None = None  # index in the assembled notebook of the student's exercise cell
    check: int | None = None  # ... of the instructor's check
    hidden: int | None = None  # ... of the instructor's hidden tests
    found: bool = True


@dataclass
class Plan:
    notebook: nbformat.NotebookNode
    exercises: list[Exercise] = field(default_factory=list)


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^(def|class)\s+{re.escape(name)}\b", source, re.MULTILINE) is not None


def student_cell(submission: nbformat.NotebookNode, name: str) -> str | None:
    """The source of the student's cell for exercise `name`: by grade_id, else by its definition."""
    code = [cell for cell in submission.cells if cell.get("cell_type") == "code"]
    tagged = [c for c in code if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == name]
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


def assemble(instructor: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> Plan:
    """The notebook the grader runs: instructor's set-up and checks, the student's exercise cells."""
    cells, exercises = [], []
    setup = next(cell for cell in instructor.cells if cell.cell_type == "code")
    cells.append(new_code_cell(setup.source))
    graded = [c for c in instructor.cells if c.cell_type == "code" and "nbgrader" in c.metadata]
    context = [c for c in instructor.cells if "graded-context" in c.metadata.get("tags", [])]
    for cell in context:
        cells.append(new_code_cell(cell.source))
    for cell in graded:
        meta = cell.metadata["nbgrader"]
        if meta.get("solution"):
            exercise = Exercise(meta["grade_id"], 0.0)
            source = student_cell(submission, exercise.name)
            exercise.found = source is not None
            exercise.cell = len(cells)
            cells.append(new_code_cell(source if source is not None else "pass  # no cell defines this exercise"))
            exercises.append(exercise)
        elif meta.get("grade"):
            target = meta["grade_id"].removeprefix("check_")
            exercise = next((e for e in exercises if e.name == target), None)
            if exercise is None:
                continue
            exercise.points = float(meta.get("points", 0))
            visible, hidden = split_hidden(cell.source)
            exercise.check = len(cells)
            cells.append(new_code_cell(FRESH_CHECKS + visible))
            if hidden is not None:
                exercise.hidden = len(cells)
                cells.append(new_code_cell(hidden))
    notebook = new_notebook(cells=cells, metadata={"kernelspec": instructor.metadata.get("kernelspec", {})})
    return Plan(notebook, exercises)


# ----------------------------------------------------------------------------- running one notebook


def _limit_resources(memory_mb: int) -> None:
    """In the child process, before anything runs: memory, core dumps, file sizes."""
    import resource

    limits = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 256 * 2**20)]
    if memory_mb:
        limits.append((resource.RLIMIT_AS, memory_mb * 2**20))
    for kind, value in limits:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


def run_one(notebook_path: str, result_path: str, cell_timeout: int, max_output: int, memory_mb: int) -> None:
    """Run an assembled notebook cell by cell, saving what happened after every cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    _limit_resources(memory_mb)
    notebook = nbformat.read(notebook_path, as_version=4)
    results: dict = {"cells": {}, "died": None}

    def save() -> None:
        temporary = result_path + ".tmp"
        Path(temporary).write_text(json.dumps(results))
        os.replace(temporary, result_path)

    class Client(NotebookClient):
        sizes: dict[int, int] = {}

        def output(self, outs, msg, display_id, cell_index):
            size = len(json.dumps(msg.get("content", {})))
            self.sizes[cell_index] = self.sizes.get(cell_index, 0) + size
            if msg["msg_type"] != "error" and self.sizes[cell_index] > max_output:
                results["cells"].setdefault(str(cell_index), {})["truncated"] = True
                return None
            return super().output(outs, msg, display_id, cell_index)

    def executed(cell, cell_index, execute_reply) -> None:
        content = execute_reply.get("content", {})
        entry = results["cells"].setdefault(str(cell_index), {})
        entry["status"] = content.get("status", "error")
        entry["ename"] = content.get("ename", "")
        entry["evalue"] = str(content.get("evalue", ""))[:2000]

    timeout_error = {"ename": "TimeoutError", "evalue": f"the cell ran for more than {cell_timeout} s"}
    client = Client(
        notebook,
        timeout=cell_timeout,
        interrupt_on_timeout=True,
        error_on_timeout=timeout_error,
        allow_errors=True,
        kernel_name="python3",
        on_cell_executed=executed,
        resources={"metadata": {"path": str(Path(notebook_path).parent)}},
    )
    save()
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                results["cells"].setdefault(str(index), {})["started"] = True
                save()
                client.execute_cell(cell, index)
                save()
    except DeadKernelError:
        results["died"] = "kernel died"
    except Exception as error:  # the kernel failed to start, or the client broke
        results["died"] = f"{type(error).__name__}: {error}"[:500]
    save()
    nbformat.write(notebook, notebook_path)


# ----------------------------------------------------------------------------- scoring


@dataclass
class Row:
    student: str
    lesson: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str = ""


def _first_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "").strip()
    return text


def score(student: str, lesson: str, plan: Plan, results: dict, stopped: str | None) -> list[Row]:
    """One row per exercise, from what each of its cells did."""
    rows = []
    cells = results.get("cells", {})
    died = results.get("died") or stopped
    for exercise in plan.exercises:
        row = Row(student, lesson, exercise.name, 0.0, exercise.points, "passed")
        own, check, hidden = (
            cells.get(str(i), {}) if i is not None else None for i in (exercise.cell, exercise.check, exercise.hidden)
        )
        truncated = any(c and c.get("truncated") for c in (own, check, hidden))

        def outcome(entry):
            if entry is None:
                return "ok"
            if "status" not in entry:
                return "not run"
            return entry["status"]

        if not exercise.found:
            row.status, row.message = "missing", f"no cell defines `{exercise.name}`: was it renamed or deleted?"
        elif outcome(check) == "not run":
            row.status = "timeout" if died and "time" in died else "kernel died"
            row.message = died or "the notebook stopped before this check ran"
        elif outcome(check) == "error":
            row.status, row.message = _classify(exercise.name, own, check)
        elif outcome(hidden) == "not run":
            row.status, row.message = ("timeout" if died and "time" in died else "kernel died"), died or ""
        elif outcome(hidden) == "error":
            row.status, row.message = "hidden tests failed", f"hidden tests of `{exercise.name}` failed"
        if row.status == "passed":
            row.points = exercise.points
            if truncated:
                row.message = "passed; its output was cut at the output limit"
        elif truncated and row.status in ("timeout", "error", "failed"):
            row.status, row.message = "output limit", "the output grew past the limit: " + row.message
        rows.append(row)
    return rows


def _classify(name: str, own: dict | None, check: dict) -> tuple[str, str]:
    ename, evalue = check.get("ename", ""), _first_line(check.get("evalue", ""))
    own_error = own if own and own.get("status") == "error" else None
    if own_error and own_error.get("ename") == "TimeoutError":
        return "timeout", f"your `{name}` cell: {_first_line(own_error['evalue'])}"
    if own_error and own_error.get("ename") != "NotImplementedError":
        return "error", f"your `{name}` cell raised {own_error['ename']}: {_first_line(own_error['evalue'])}"
    if ename == "TimeoutError":
        return "timeout", evalue
    if ename == "NameError" and f"'{name}'" in evalue:
        return "missing", f"`{name}` is not defined: was it renamed?"
    if "not written yet" in evalue or ename == "NotImplementedError":
        return "not attempted", evalue
    if ename in ("CheckError", "AssertionError"):
        return "failed", evalue
    return "error", f"{ename}: {evalue}"


# ----------------------------------------------------------------------------- the class


@dataclass
class Job:
    student: str
    lesson: course.Lesson
    path: Path | None


def grade_job(job: Job, out: Path, limits: argparse.Namespace) -> tuple[list[Row], float]:
    """Grade one student's notebook; never raises."""
    start = time.perf_counter()
    stem = job.lesson.stem
    instructor = nbformat.read(course.SOLUTIONS / job.lesson.filename, as_version=4)
    empty = assemble(instructor, new_notebook())
    if job.path is None:
        return [
            Row(job.student, stem, e.name, 0.0, e.points, "not submitted", "no notebook was submitted")
            for e in empty.exercises
        ], 0.0
    try:
        submission = nbformat.reads(job.path.read_text(encoding="utf-8", errors="replace"), as_version=4)
        if not isinstance(submission.get("cells"), list):
            raise ValueError("it has no list of cells")
    except Exception as error:
        message = f"not a readable notebook ({type(error).__name__}: {_first_line(str(error))[:200]})"
        return [
            Row(job.student, stem, e.name, 0.0, e.points, "unreadable", message) for e in empty.exercises
        ], time.perf_counter() - start
    plan = assemble(instructor, submission)
    with tempfile.TemporaryDirectory(prefix="grade-") as work:
        notebook_path, result_path = os.path.join(work, job.lesson.filename), os.path.join(work, "result.json")
        nbformat.write(plan.notebook, notebook_path)
        command = [
            sys.executable,
            "-m",
            "utils.grade",
            "--run-one",
            notebook_path,
            result_path,
            "--cell-timeout",
            str(limits.cell_timeout),
            "--max-output",
            str(limits.max_output),
            "--memory-mb",
            str(limits.memory_mb),
        ]
        environment = {**os.environ, "PYTHONPATH": str(course.ROOT), "MPLBACKEND": "Agg"}
        stopped = None
        process = subprocess.Popen(
            command,
            cwd=work,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=limits.notebook_timeout)
        except subprocess.TimeoutExpired:
            stopped = f"time-out: the notebook ran for more than {limits.notebook_timeout} s"
            _kill(process)
            _, stderr = process.communicate()
        try:
            results = json.loads(Path(result_path).read_text())
        except Exception:
            results = {
                "cells": {},
                "died": stopped or f"the grading process failed: {_first_line(stderr.decode(errors='replace'))[-300:]}",
            }
        executed = out / "executed" / job.student
        executed.mkdir(parents=True, exist_ok=True)
        shutil.copy(notebook_path, executed / job.lesson.filename)
    return score(job.student, stem, plan, results, stopped), time.perf_counter() - start


def _kill(process: subprocess.Popen) -> None:
    """Stop a grading process and everything it started (its kernel too)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def feedback(student: str, lesson: str, rows: list[Row]) -> str:
    """What a student reads about one lesson."""
    earned, possible = sum(r.points for r in rows), sum(r.max_points for r in rows)
    lines = [f"# {lesson}: {earned:g} of {possible:g} points", ""]
    for row in rows:
        mark = "✔" if row.status == "passed" else "✘"
        lines.append(
            f"- {mark} `{row.exercise}` ({row.points:g}/{row.max_points:g}): {STATUS_WORDS.get(row.status, row.status)}"
        )
        if row.message and row.status != "passed":
            lines.extend("    " + line for line in row.message.splitlines())
        elif row.message:
            lines.append(f"    {row.message}")
    return "\n".join(lines) + "\n"


def find_jobs(submissions: Path) -> tuple[list[Job], list[str]]:
    """One job per student and lesson that anyone submitted; and the files it ignores."""
    lessons = {lesson.filename: lesson for lesson in course.LESSONS if (course.SOLUTIONS / lesson.filename).exists()}
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    submitted = {name for s in students for name in (p.name for p in s.glob("*.ipynb")) if name in lessons}
    ignored = [
        str(p.relative_to(submissions))
        for s in students
        for p in sorted(s.iterdir())
        if p.is_file() and p.name not in lessons
    ]
    jobs = [
        Job(s.name, lessons[name], s / name if (s / name).exists() else None)
        for s in students
        for name in sorted(submitted)
    ]
    return jobs, ignored


def grade(submissions: Path, out: Path, limits: argparse.Namespace, timings: list[float] | None = None) -> list[Row]:
    jobs, ignored = find_jobs(submissions)
    for name in ignored:
        print(f"ignoring {name}: not a lesson notebook")
    out.mkdir(parents=True, exist_ok=True)
    lock, done, rows_by_job = threading.Lock(), [0], {}
    started = time.perf_counter()

    def work(index: int, job: Job) -> None:
        try:
            rows, seconds = grade_job(job, out, limits)
        except Exception as error:  # never lose a student: the grader's own failure is a row too
            rows, seconds = (
                [Row(job.student, job.lesson.stem, "*", 0.0, 0.0, "grader error", f"{type(error).__name__}: {error}")],
                0.0,
            )
        with lock:
            rows_by_job[index] = rows
            if timings is not None:
                timings.append(seconds)
            done[0] += 1
            earned, possible = sum(r.points for r in rows), sum(r.max_points for r in rows)
            print(
                f"[{done[0]}/{len(jobs)}] {job.student} · {job.lesson.stem}: {earned:g}/{possible:g} ({seconds:.1f} s)",
                flush=True,
            )

    with ThreadPoolExecutor(max_workers=max(1, limits.workers)) as pool:
        for index, job in enumerate(jobs):
            pool.submit(work, index, job)
    rows = [row for index in sorted(rows_by_job) for row in rows_by_job[index]]
    write_outputs(rows, out)
    print_summary(rows, time.perf_counter() - started, len(jobs))
    return rows


def write_outputs(rows: list[Row], out: Path) -> None:
    with open(out / "gradebook.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.student,
                    row.lesson,
                    row.exercise,
                    f"{row.points:g}",
                    f"{row.max_points:g}",
                    row.status,
                    row.message,
                ]
            )
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.student, row.lesson), []).append(row)
    for (student, lesson), group in groups.items():
        folder = out / "feedback" / student
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{lesson}.md").write_text(feedback(student, lesson, group))


def print_summary(rows: list[Row], seconds: float, notebooks: int) -> None:
    students = sorted({r.student for r in rows})
    lessons = sorted({r.lesson for r in rows})
    width = max([len(s) for s in students] + [7])
    print()
    print(f"{'student':<{width}}  " + "  ".join(f"{lesson[:2]:>7}" for lesson in lessons) + "    total")
    for student in students:
        cells, total, possible = [], 0.0, 0.0
        for lesson in lessons:
            group = [r for r in rows if r.student == student and r.lesson == lesson]
            earned, most = sum(r.points for r in group), sum(r.max_points for r in group)
            total, possible = total + earned, possible + most
            cells.append(f"{earned:g}/{most:g}")
        print(f"{student:<{width}}  " + "  ".join(f"{c:>7}" for c in cells) + f"  {f'{total:g}/{possible:g}':>7}")
    print(f"\ngraded {notebooks} notebooks of {len(students)} students in {seconds:.1f} s")


def benchmark(
    students: int = 30, stems: tuple[str, ...] = ("01_averaging", "02_weighted_average"), workers: int = 2
) -> dict:
    """Grade a synthetic class (right answers, blank copies and wrong answers in turn); returns the times."""
    with tempfile.TemporaryDirectory(prefix="grade-benchmark-") as folder:
        root = Path(folder)
        for number in range(students):
            student = root / "class" / f"student{number:02d}"
            student.mkdir(parents=True)
            for stem in stems:
                kind = number % 3  # 0: right answers, 1: the blank learner copy, 2: wrong answers
                notebook = nbformat.read(
                    (course.NOTEBOOKS if kind == 1 else course.SOLUTIONS) / f"{stem}.ipynb", as_version=4
                )
                for cell in notebook.cells:
                    name = cell.metadata.get("nbgrader", {}).get("grade_id")
                    if kind == 2 and cell.metadata.get("nbgrader", {}).get("solution"):
                        cell.source += f"\n\n{name} = lambda *args, **kwargs: torch.zeros(1)  # a wrong answer\n"
                nbformat.write(notebook, student / f"{stem}.ipynb")
        limits = argparse.Namespace(
            workers=workers, cell_timeout=60, notebook_timeout=600, memory_mb=4096, max_output=1_000_000
        )
        timings: list[float] = []
        started = time.perf_counter()
        rows = grade(root / "class", root / "out", limits, timings)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "notebooks": len(timings), "timings": timings, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description="Grade a class's lesson notebooks.")
    parser.add_argument("submissions", type=Path, nargs="?", help="folder with one sub-folder per student")
    parser.add_argument("--out", type=Path, help="where the gradebook and feedback go")
    parser.add_argument("--workers", type=int, default=2, help="notebooks graded at once (default 2)")
    parser.add_argument("--cell-timeout", type=int, default=60, help="seconds one cell may run (default 60)")
    parser.add_argument("--notebook-timeout", type=int, default=600, help="seconds one notebook may run (default 600)")
    parser.add_argument(
        "--memory-mb", type=int, default=4096, help="memory one notebook may use, in MB (default 4096; 0: no limit)"
    )
    parser.add_argument(
        "--max-output", type=int, default=1_000_000, help="bytes of output one cell may print (default 1 MB)"
    )
    parser.add_argument("--run-one", nargs=2, metavar=("NOTEBOOK", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(*args.run_one, cell_timeout=args.cell_timeout, max_output=args.max_output, memory_mb=args.memory_mb)
        return 0
    if args.submissions is None or args.out is None:
        parser.print_usage(sys.stderr)
        print("python -m utils.grade: give the submissions folder and --out DIR", file=sys.stderr)
        return 2
    if not args.submissions.is_dir():
        print(f"python -m utils.grade: {args.submissions} is not a folder", file=sys.stderr)
        return 2
    grade(args.submissions, args.out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
