"""The class: find every student's notebooks, grade them in parallel, write what the instructor reads.

python -m utils.grade SUBMISSIONS --out DIR [--workers 2] [--cell-timeout 60] [--notebook-timeout 600]
                                            [--memory-mb 4096] [--max-output 1000000]
                                            [--no-sandbox-i-accept-the-risk]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

from utils import course
from utils.instructor.grade import report, run, sandbox
from utils.instructor.grade.assemble import Plan, assemble
from utils.instructor.grade.report import Row


@dataclass
class Job:
    student: str
    lesson: course.Lesson
    path: Path | None


def read_submission(path: Path) -> nbformat.NotebookNode:
    """The student's notebook, or ValueError when it is not one."""
    submission = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
    if not isinstance(submission.get("cells"), list):
        raise ValueError("it has no list of cells")
    return submission


def grade_job(job: Job, out: Path, limits: argparse.Namespace) -> tuple[list[Row], float]:
    """Grade one student's notebook; never raises for anything the student did."""
    start = time.perf_counter()
    instructor = nbformat.read(course.SOLUTIONS / job.lesson.filename, as_version=4)
    empty = assemble(instructor, new_notebook())

    def rows_for_all(status: str, message: str, flags: list[str]) -> list[Row]:
        return [
            Row(job.student, job.lesson.stem, e.name, 0.0, e.points, status, message, flags) for e in empty.exercises
        ]

    if job.path is None:
        return rows_for_all("not submitted", "no notebook was submitted", []), 0.0
    try:
        submission = read_submission(job.path)
    except Exception:
        return rows_for_all("unreadable", report.UNREADABLE, ["unreadable file"]), time.perf_counter() - start
    plan = assemble(instructor, submission)
    with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as folder:
        results, stopped, executed = run_in_sandbox(plan, job, Path(folder), limits)
    if results.get("grader_error"):  # it fails closed: no verdict without everything the checks need
        return rows_for_all("grader error", results["grader_error"], []), time.perf_counter() - start
    rows = report.score(job.student, job.lesson.stem, plan, results, stopped)
    for_student, for_instructor = report.executed_copies(plan, executed, results)
    for part, notebook in (("executed", for_student), ("instructor", for_instructor)):
        (out / part / job.student).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out / part / job.student / job.lesson.filename)
    return rows, time.perf_counter() - start


def run_in_sandbox(plan: Plan, job: Job, folder: Path, limits: argparse.Namespace):
    """Run `python -m utils.grade --run-one` on the plan; its results, why it was stopped, the executed notebook."""
    work, private = folder / "work", folder / "private"
    work.mkdir()
    private.mkdir(mode=0o700)
    sandbox.learner_files(work)
    nbformat.write(plan.notebook, private / job.lesson.filename)
    exercises = [{k: v for k, v in asdict(e).items()} for e in plan.exercises]
    (private / "plan.json").write_text(
        json.dumps({"notebook": job.lesson.filename, "imports": plan.imports, "exercises": exercises})
    )
    numbers = (limits.cell_timeout, limits.max_output, limits.memory_mb)
    process = _forks().Process(target=run.child, args=(work, private, numbers, limits.sandbox, str(course.ROOT)))
    process.start()
    process.join(limits.notebook_timeout)
    stopped = None
    if process.is_alive():
        stopped = f"time-out: the notebook ran for more than {limits.notebook_timeout} s"
        _kill(process.pid)
        process.join()
    _kill_sandbox(private / "kernel.pid")
    try:
        results = json.loads((private / "result.json").read_text())
    except Exception:
        stderr = (private / "stderr.txt").read_text(errors="replace") if (private / "stderr.txt").exists() else ""
        failed = report.first_line(stderr)[-300:]
        results = {"cells": {}, "checks": {}, "died": stopped or f"the grading process failed: {failed}"}
    executed = private / "executed.ipynb"
    return results, stopped, nbformat.read(executed, as_version=4) if executed.exists() else plan.notebook


@functools.cache
def _forks() -> multiprocessing.context.BaseContext:
    """Where each notebook's grading process comes from: a fork server that has imported torch, nbclient and
    the checks once, so that a notebook's process starts with them (the student's kernel is a new process)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["utils.instructor.grade.run"])
    return context


def _kill(pid: int) -> None:
    """Stop a notebook's grading process and everything it started (its kernel too)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _kill_sandbox(recorded: Path) -> None:
    """Stop the student's sandbox, whatever it did: killing the `unshare` that made it kills the shell at the
    root of its PID namespace, and with it every process the student started, however they handle signals."""
    try:
        pid = int(recorded.read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (OSError, ValueError):
        return
    name = os.path.basename(command)
    if name == b"unshare" or name.startswith(b"python"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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
    """Grade every job with `limits.workers` at once; write the outputs; return every row."""
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
            line = (
                f"[{done[0]}/{len(jobs)}] {job.student} · {job.lesson.stem}: {earned:g}/{possible:g} ({seconds:.1f} s)"
            )
            print(line, flush=True)

    with ThreadPoolExecutor(max_workers=max(1, limits.workers)) as pool:
        for index, job in enumerate(jobs):
            pool.submit(work, index, job)
    rows = [row for index in sorted(rows_by_job) for row in rows_by_job[index]]
    report.write_outputs(rows, out)
    report.print_summary(rows, time.perf_counter() - started, len(jobs))
    print(f"{out}/executed/ may go back to the students (no hidden tests); {out}/instructor/ has the hidden tests.")
    return rows


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
        limits.sandbox = sandbox.problem() is None
        timings: list[float] = []
        started = time.perf_counter()
        rows = grade(root / "class", root / "out", limits, timings)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "notebooks": len(timings), "timings": timings, "rows": rows, "sandbox": limits.sandbox}


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="python -m utils.grade", description="Grade a class's lesson notebooks.")
    parse.add_argument("submissions", type=Path, nargs="?", help="folder with one sub-folder per student")
    parse.add_argument("--out", type=Path, help="where the gradebook and feedback go")
    parse.add_argument("--workers", type=int, default=2, help="notebooks graded at once (default 2)")
    parse.add_argument("--cell-timeout", type=int, default=60, help="seconds one cell may run (default 60)")
    parse.add_argument("--notebook-timeout", type=int, default=600, help="seconds one notebook may run (default 600)")
    parse.add_argument(
        "--memory-mb", type=int, default=4096, help="memory one notebook may use, in MB (default 4096; 0: no limit)"
    )
    parse.add_argument(
        "--max-output", type=int, default=1_000_000, help="bytes of output one cell may print (default 1 MB)"
    )
    parse.add_argument(
        sandbox.RISK_FLAG,
        dest="sandbox",
        action="store_false",
        help="run the students' code without the sandbox, where it can read the solutions and use the network",
    )
    parse.add_argument("--run-one", nargs=2, type=Path, metavar=("WORK", "PRIVATE"), help=argparse.SUPPRESS)
    return parse


def main(argv: list[str] | None = None) -> int:
    """Grade a class (exit 0 once graded, whatever was submitted; 2 for usage errors or no sandbox)."""
    args = parser().parse_args(argv)
    if args.run_one:
        from utils.instructor.grade.run import run_one

        run_one(*args.run_one, args.cell_timeout, args.max_output, args.memory_mb, args.sandbox)
        return 0
    if args.submissions is None or args.out is None:
        parser().print_usage(sys.stderr)
        print("python -m utils.grade: give the submissions folder and --out DIR", file=sys.stderr)
        return 2
    if not args.submissions.is_dir():
        print(f"python -m utils.grade: {args.submissions} is not a folder", file=sys.stderr)
        return 2
    problem = sandbox.problem() if args.sandbox else None
    if problem:
        print(
            f"python -m utils.grade: cannot make the sandbox the students' code must run in: {problem}.\n"
            "Without it a student's notebook can read the solutions and hidden tests and use the network. Grade on "
            f"Linux with util-linux's `unshare` (see the README), or pass {sandbox.RISK_FLAG} to grade anyway.",
            file=sys.stderr,
        )
        return 2
    if args.sandbox:
        print(f"python -m utils.grade: {sandbox.describe()}.", flush=True)
    else:
        print(
            "WARNING: grading without a sandbox: the students' code runs as this user "
            f"({'root' if sandbox.as_root() else 'you'}), and can read and write this machine's files and use the network.",
            flush=True,
        )
    grade(args.submissions, args.out, args)
    return 0
