"""The class: find every student's notebooks, grade them in parallel, write what the instructor reads.

python -m utils.grade SUBMISSIONS --out DIR [--workers 2] [--cell-timeout 60] [--notebook-timeout 600]
                                            [--memory-mb 4096] [--max-output 1000000]
                                            [--student NAME ...] [--shard i/n]
                                            [--no-sandbox-i-accept-the-risk]
python -m utils.grade merge SHARD_DIR... --out DIR

Grading into a folder that holds earlier grades updates them: the students and lessons graded now
replace their earlier rows, every other row stays (`--student NAME` grades only that student; a
folder of late submissions updates only the students in it).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

from utils import course
from utils.instructor.grade import intake, report, run, sandbox, shards
from utils.instructor.grade.assemble import Plan, assemble
from utils.instructor.grade.report import Row


@dataclass
class Job:
    student: str
    lesson: course.Lesson
    path: Path | None
    file: str = ""  # the file's name in the student's folder (another name than the lesson's, maybe)
    refused: intake.Refused | None = None
    notes: list[str] = field(default_factory=list)  # for the student's feedback: how the file was found
    flags: list[str] = field(default_factory=list)  # integrity flags from the folder (a link, a pipe, ...)


def read_submission(path: Path) -> nbformat.NotebookNode:
    """The student's notebook; `intake.Refused` for a file that is not a regular file or is too large
    (never followed if it is a link), ValueError when it is not a notebook."""
    return intake.read_notebook(path.parent, path.name)


@functools.cache
def lesson_exercises(stem: str) -> list[tuple[str, float]]:
    """A lesson's exercises and their points, from its solution notebook."""
    instructor = nbformat.read(course.SOLUTIONS / f"{stem}.ipynb", as_version=4)
    return [(e.name, e.points) for e in assemble(instructor, new_notebook()).exercises]


def grade_job(job: Job, out: Path, limits: argparse.Namespace) -> tuple[list[Row], float]:
    """Grade one student's notebook; never raises for anything the student did."""
    start = time.perf_counter()
    instructor = nbformat.read(course.SOLUTIONS / job.lesson.filename, as_version=4)
    notes = list(job.notes)

    def done(rows: list[Row], seconds: float | None = None) -> tuple[list[Row], float]:
        for row in rows:
            row.integrity += [flag for flag in job.flags if flag not in row.integrity]
            row.file, row.notes = job.file, list(notes)
        return rows, time.perf_counter() - start if seconds is None else seconds

    def rows_for_all(status: str, message: str, flags: list[str]) -> list[Row]:
        if status != "not submitted":
            _forget_executed(job, out)  # an earlier run's copy is not what this file holds
        return [
            Row(job.student, job.lesson.stem, name, 0.0, points, status, message, list(flags))
            for name, points in lesson_exercises(job.lesson.stem)
        ]

    if job.refused is not None:
        return done(rows_for_all("refused", job.refused.message, [job.refused.flag]))
    if job.path is None:
        return done(rows_for_all("not submitted", report.NOT_SUBMITTED, []), 0.0)
    try:
        submission = read_submission(job.path)
    except intake.Refused as refused:
        return done(rows_for_all("refused", refused.message, [refused.flag]))
    except Exception:
        return done(rows_for_all("unreadable", report.UNREADABLE, ["unreadable file"]))
    crashed = intake.setup_error(submission)
    if crashed:
        notes.append(crashed)
    plan = assemble(instructor, submission)
    with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as folder:
        results, stopped, executed = run_in_sandbox(plan, job, Path(folder), limits)
    if results.get("grader_error"):  # it fails closed: no verdict without everything the checks need
        return rows_for_all("grader error", results["grader_error"], []), time.perf_counter() - start
    rows = report.score(job.student, job.lesson.stem, plan, results, stopped)
    for_student, for_instructor = report.executed_copies(plan, executed, results)
    for part, notebook in (("executed", for_student), ("instructor", for_instructor)):
        report.write_file(out / part / job.student / job.lesson.filename, nbformat.writes(notebook))
    return done(rows)


def _forget_executed(job: Job, out: Path) -> None:
    for part in ("executed", "instructor"):
        (out / part / job.student / job.lesson.filename).unlink(missing_ok=True)


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
    """One job per student and lesson that anyone submitted; and what the instructor reads about the files
    (those ignored, refused, matched under another name, left out as older copies)."""
    lessons = [lesson for lesson in course.LESSONS if (course.SOLUTIONS / lesson.filename).exists()]
    folders: dict[str, intake.Folder] = {}
    said: list[str] = []
    for entry in sorted(os.scandir(submissions), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and os.path.isdir(entry.path):
            folders[entry.name] = intake.Folder(refused=intake.folder_link())
            said.append(f"{entry.name}: refused, the student's folder is a symbolic link")
        elif entry.is_dir(follow_symlinks=False):
            folders[entry.name] = intake.scan(Path(entry.path), lessons)
            said.extend(folders[entry.name].said)
        else:
            said.append(f"ignoring {entry.name}: not a student's folder")
    by_stem = {lesson.stem: lesson for lesson in lessons}
    submitted = sorted({stem for folder in folders.values() for stem in folder.lessons})
    jobs = []
    for student, folder in folders.items():
        for stem in submitted:
            job, found = Job(student, by_stem[stem], None), folder.lessons.get(stem)
            if folder.refused is not None:
                job.refused = folder.refused
            elif found is not None:
                job.path, job.file, job.refused = submissions / student / found.file, found.file, found.refused
                job.notes, job.flags = list(found.notes), list(found.flags)
            elif folder.unmatched:
                names = ", ".join(f"`{name}`" for name in folder.unmatched)
                job.notes.append(
                    f"no file in your folder was taken for {stem}: {names} matched no lesson (neither the "
                    f"exercises in it nor its name say which); name it {by_stem[stem].filename}."
                )
            job.flags += [flag for flag in folder.flags if flag not in job.flags]
            jobs.append(job)
    return jobs, said


def grade(
    submissions: Path,
    out: Path,
    limits: argparse.Namespace,
    timings: list[float] | None = None,
    students: list[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Row]:
    """Grade every job (only `students`' if given, only shard i of n if given) with `limits.workers` at once;
    update the outputs in `out` (earlier rows of other students and lessons stay); return every row there."""
    jobs, said = find_jobs(submissions)
    for line in said:
        print(line)
    everyone, lessons = sorted({job.student for job in jobs}), sorted({job.lesson.stem for job in jobs})
    if students:
        jobs = [job for job in jobs if job.student in set(students)]
    if shard:
        mine = set(shards.share(everyone, shard))
        jobs = [job for job in jobs if job.student in mine]
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
    graded = [row for index in sorted(rows_by_job) for row in rows_by_job[index]]
    earlier = report.read_rows(out)
    rows = report.complete(report.combine(earlier, graded), lesson_exercises)
    extra = None
    if shard:
        extra = {shards.SHARD_FILE: shards.document(shard, shards.share(everyone, shard), everyone, lessons)}
    report.write_outputs(rows, out, extra)
    report.print_summary(graded, time.perf_counter() - started, len(jobs))
    if earlier:
        updated = len({row.student for row in graded})
        print(f"updated {updated} students in {out}; it holds {len({row.student for row in rows})} students in all.")
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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "seconds": seconds,
        "notebooks": len(timings),
        "timings": timings,
        "rows": rows,
        "sandbox": limits.sandbox,
        "students": students,
        "cores": cores,
    }


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m utils.grade",
        description="Grade a class's lesson notebooks. `python -m utils.grade merge SHARD_DIR... --out DIR` joins "
        "the folders of shards graded with --shard.",
    )
    parse.add_argument("submissions", type=Path, nargs="?", help="folder with one sub-folder per student")
    parse.add_argument(
        "--out", type=Path, help="where the gradebook and feedback go (earlier grades there are updated)"
    )
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
        "--student",
        action="append",
        metavar="NAME",
        help="grade only this student's folder (repeat for more); the other students' rows in --out stay",
    )
    parse.add_argument(
        "--shard",
        type=shards.parse_shard,
        metavar="i/n",
        help="grade only share i of n of the class (every n-th student, sorted); join the shares with `merge`",
    )
    parse.add_argument(
        sandbox.RISK_FLAG,
        dest="sandbox",
        action="store_false",
        help="run the students' code without the sandbox, where it can read the solutions and use the network",
    )
    parse.add_argument("--run-one", nargs=2, type=Path, metavar=("WORK", "PRIVATE"), help=argparse.SUPPRESS)
    return parse


def merge_main(argv: list[str]) -> int:
    """`python -m utils.grade merge SHARD_DIR... --out DIR` (exit 0 once merged; 2 when the shards do not join)."""
    parse = argparse.ArgumentParser(
        prog="python -m utils.grade merge",
        description="Join the folders of a class graded in shards (--shard i/n) into one: gradebook, summary, "
        "class.png, feedback, executed notebooks. Refuses a shard missing or given twice, and a student graded twice.",
    )
    parse.add_argument("shards", type=Path, nargs="+", help="the shards' --out folders, every one of them")
    parse.add_argument("--out", type=Path, required=True, help="where the merged grades go")
    args = parse.parse_args(argv)
    try:
        rows = shards.merge(args.shards, args.out, lesson_exercises)
    except shards.MergeError as error:
        print(f"python -m utils.grade merge: {error}. Nothing written.", file=sys.stderr)
        return 2
    students = len({row.student for row in rows})
    print(f"merged {len(args.shards)} shards into {args.out}: {students} students, {len(rows)} rows.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Grade a class (exit 0 once graded, whatever was submitted; 2 for usage errors or no sandbox)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
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
    if args.student and args.shard:
        print("python -m utils.grade: --student and --shard do not go together", file=sys.stderr)
        return 2
    unknown = [
        name
        for name in args.student or []
        if name in ("", ".", "..") or "/" in name or os.sep in name or not os.path.lexists(args.submissions / name)
    ]
    if unknown:
        print(f"python -m utils.grade: no student folder {', '.join(unknown)} in {args.submissions}", file=sys.stderr)
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
    grade(args.submissions, args.out, args, students=args.student, shard=args.shard)
    return 0
