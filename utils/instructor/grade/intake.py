"""What each student submitted: the files of a submissions folder, matched to the lessons and read safely.

A submission is read only when it is a regular file, opened without following a symbolic link (a
link to `solutions/` would otherwise be graded as the student's work) and without waiting (a named
pipe would hang the grader), and only up to `MAX_BYTES`. A student's folder that is itself a link
is refused too. Each refusal says why, and is flagged.

Files saved under another name, as browsers and LMSs save them (`05_dot_product_attention (1).ipynb`,
`…-2.ipynb`, `….ipynb.json`, `lesson5.ipynb`), are matched to their lesson by the exercises they
hold (their cells' nbgrader grade ids), else by the lesson's name or number in the file name. A
file that matches no lesson is named in the student's feedback, never silently left out. Of two
files for one lesson the newest is graded and the other is named.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from utils import course

MAX_MB = 20
MAX_BYTES = MAX_MB * 10**6  # a lesson with its outputs is well under 1 MB; pictures make a few MB at most
NOTEBOOK_NAME = re.compile(r"\.ipynb(\.json|\.txt)?$|\.json$", re.IGNORECASE)
COPY_MARK = re.compile(r"(\s*\(\d+\)|\s+copy(\s+\d+)?|[-_ ]\d+)$", re.IGNORECASE)  # "(1)", " copy 2", "-2"


class Refused(Exception):
    """A file the grader will not read: why (for the student) and the integrity flag (for the instructor)."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.message, self.flag = message, flag


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    )
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def refusal(name: str, mode: int | None = None, size: int | None = None) -> Refused:
    """Why the file `name` (of this `mode`, or this `size` in bytes) is not read."""
    if size is not None:
        return Refused(
            f"`{name}` is {size / 1e6:.1f} MB, more than the grader reads ({MAX_MB} MB): clear its outputs "
            "(Edit > Clear Outputs of All Cells), save it, and submit it again.",
            f"file over {MAX_MB} MB refused (`{name}`)",
        )
    kind = _kind(mode or 0)
    if kind == "a symbolic link":
        return Refused(
            f"`{name}` is a symbolic link, not a notebook file: the grader reads the file itself, never what a "
            "link points to. Submit the .ipynb file that Jupyter saved.",
            f"a symbolic link submitted (`{name}`)",
        )
    return Refused(
        f"`{name}` is {kind}, not a notebook file. Submit the .ipynb file that Jupyter saved.",
        f"{kind} submitted (`{name}`)",
    )


def folder_link() -> Refused:
    return Refused(
        "your submission folder is a symbolic link: the grader reads only a real folder with your notebooks in it.",
        "the student's folder is a symbolic link",
    )


def read_bytes(folder: Path, name: str) -> bytes:
    """The bytes of the regular file `folder/name`, or `Refused`: neither `folder` nor the file is followed
    if it is a link, nothing waits on a pipe, and the checks are made on the file opened (no race)."""
    nofollow, nonblock = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_NONBLOCK", 0)
    flags = os.O_RDONLY | nofollow | nonblock | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    directory = None
    try:
        if os.open in os.supports_dir_fd:
            directory = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow)
            handle = os.open(name, flags, dir_fd=directory)
        else:  # no openat here (Windows): look before opening
            if os.path.islink(folder):
                raise folder_link()
            info = os.lstat(folder / name)
            if not stat.S_ISREG(info.st_mode):
                raise refusal(name, info.st_mode)
            handle = os.open(folder / name, flags)
    except OSError as error:
        if directory is None and error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise folder_link() from None
        try:
            mode = os.lstat(folder / name).st_mode
        except OSError:
            raise error from None
        if error.errno == errno.ELOOP or not stat.S_ISREG(mode):
            raise refusal(name, mode) from None
        raise
    finally:
        if directory is not None:
            os.close(directory)
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise refusal(name, info.st_mode)
        if info.st_size > MAX_BYTES:
            raise refusal(name, size=info.st_size)
        if nonblock:
            os.set_blocking(handle, True)
        chunks, total = [], 0
        while total <= MAX_BYTES:
            chunk = os.read(handle, min(1 << 20, MAX_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > MAX_BYTES:  # it grew while being read
            raise refusal(name, size=total)
        return b"".join(chunks)
    finally:
        os.close(handle)


def read_notebook(folder: Path, name: str) -> nbformat.NotebookNode:
    """The student's notebook; `Refused` for a file the grader does not read, ValueError (or a JSON error)
    for one that is not a notebook."""
    submission = nbformat.reads(read_bytes(folder, name).decode("utf-8", errors="replace"), as_version=4)
    if not isinstance(submission.get("cells"), list):
        raise ValueError("it has no list of cells")
    return submission


# --- which lesson a file is ---------------------------------------------------------------------------------


def _normal(text: str) -> str:
    return re.sub(r"[\s\-.]+", "_", text.strip().lower())


def lesson_by_name(name: str, lessons: list[course.Lesson]) -> course.Lesson | None:
    """The lesson a file's name says, copies' marks aside: its stem (with or without the number), else the
    only lesson number in it; None when it says none, or more than one."""
    base = NOTEBOOK_NAME.sub("", name)
    variants = [base]
    while COPY_MARK.search(variants[-1]) and COPY_MARK.sub("", variants[-1]):
        variants.append(COPY_MARK.sub("", variants[-1]))
    for variant in variants:
        for lesson in lessons:
            if _normal(variant) in (lesson.stem, lesson.stem[3:]):
                return lesson
    by_number = {lesson.number: lesson for lesson in lessons}
    for variant in reversed(variants):
        numbers = {int(n) for n in re.findall(r"\d+", variant)} & set(by_number)
        if len(numbers) > 1:
            return None
        if numbers:
            return by_number[numbers.pop()]
    return None


def lesson_by_content(notebook: nbformat.NotebookNode, lessons: list[course.Lesson]) -> course.Lesson | None:
    """The lesson whose exercises (and checks) the notebook's cells are tagged with, when only one fits best."""
    ids = {
        cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for cell in notebook.get("cells", [])
        if isinstance(cell, dict)
    }
    scores = {
        lesson: len(
            ids
            & ({*course.EXERCISES.get(lesson.stem, ())} | {f"check_{e}" for e in course.EXERCISES.get(lesson.stem, ())})
        )
        for lesson in lessons
    }
    best = max(scores.values(), default=0)
    winners = [lesson for lesson, score in scores.items() if score == best]
    return winners[0] if best and len(winners) == 1 else None


# --- a student's folder -------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A file of a student's folder taken for a lesson."""

    name: str
    lesson: course.Lesson
    mtime_ns: int
    refused: Refused | None = None
    how: str = ""  # how a file under another name was matched: "", "by its exercises", "by its name"


@dataclass
class Submission:
    """What one student's folder holds for one lesson: the file to grade (or why none is), and notes."""

    file: str | None = None
    refused: Refused | None = None
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


@dataclass
class Folder:
    """A student's folder: a `Submission` per lesson found, notes for lessons not found, lines for the instructor."""

    lessons: dict[str, Submission] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)  # notebook-like files that match no lesson
    flags: list[str] = field(default_factory=list)  # refused files that match no lesson: flagged on every lesson
    said: list[str] = field(default_factory=list)  # for the instructor's screen
    refused: Refused | None = None  # the folder itself


def scan(folder: Path, lessons: list[course.Lesson]) -> Folder:
    """Every lesson a student's folder holds, without following a link or reading anything but regular files."""
    found, result = {}, Folder()
    student = folder.name
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") or name == "__MACOSX":
            continue
        info = entry.stat(follow_symlinks=False)
        exact = next((lesson for lesson in lessons if lesson.filename == name), None)
        if exact is None and not NOTEBOOK_NAME.search(name):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a lesson notebook"
            result.said.append(f"ignoring {student}/{name}: {what}")
            continue
        candidate = Candidate(name, exact, info.st_mtime_ns)  # type: ignore[arg-type]
        if not stat.S_ISREG(info.st_mode):
            candidate.refused = refusal(name, info.st_mode)
        elif info.st_size > MAX_BYTES:
            candidate.refused = refusal(name, size=info.st_size)
        if exact is None:
            _match(folder, candidate, lessons, result)
        if candidate.lesson is None:
            result.unmatched.append(name)
            if candidate.refused:
                result.flags.append(candidate.refused.flag)
            why = "not read" if candidate.refused else "no lesson's exercises, name or number in it"
            result.said.append(f"{student}/{name}: could not tell which lesson it is ({why})")
            continue
        found.setdefault(candidate.lesson.stem, []).append(candidate)
    for stem, candidates in found.items():
        result.lessons[stem] = _choose(student, stem, candidates, result.said)
    return result


def _match(folder: Path, candidate: Candidate, lessons: list[course.Lesson], result: Folder) -> None:
    by_name = lesson_by_name(candidate.name, lessons)
    by_content = None
    if candidate.refused is None:
        try:
            by_content = lesson_by_content(read_notebook(folder, candidate.name), lessons)
        except Refused as refused:
            candidate.refused = refused
        except Exception:
            pass  # not a notebook: its name may still say which lesson it was meant to be
    candidate.lesson = by_content or by_name  # type: ignore[assignment]
    candidate.how = "by its exercises" if by_content else "by its name" if by_name else ""
    if by_content and by_name and by_content != by_name:
        candidate.how = f"by its exercises, though its name says lesson {by_name.number:02d}"


def _choose(student: str, stem: str, candidates: list[Candidate], said: list[str]) -> Submission:
    """The newest readable file for a lesson is graded; the others are named (a refused one is flagged)."""
    readable = [c for c in candidates if c.refused is None]
    newest = max(readable or candidates, key=lambda c: (c.mtime_ns, c.name))
    chosen = Submission(newest.name, newest.refused)
    if newest.refused is not None:
        said.append(f"{student}/{newest.name}: refused ({newest.refused.flag})")
    if newest.how:
        chosen.notes.append(f"`{newest.name}` was graded as {stem} (matched {newest.how}).")
        said.append(f"{student}/{newest.name}: graded as {stem} (matched {newest.how})")
    for other in candidates:
        if other is newest:
            continue
        if other.refused is not None:
            chosen.notes.append(f"`{other.name}` was not read: {other.refused.message}")
            chosen.flags.append(other.refused.flag)
        else:
            chosen.notes.append(f"`{other.name}` is an older copy of this lesson and was not graded.")
        said.append(f"{student}/{other.name}: not graded (`{newest.name}` was, for {stem})")
    return chosen


def setup_error(submission: nbformat.NotebookNode) -> str | None:
    """What the student's own set-up cell said when it failed, as the notebook saved it (its error output),
    with what to do; None when it shows no error."""
    code = [c for c in submission.cells if c.get("cell_type") == "code"]
    setup = next((c for c in code if "utils.course import start" in c.get("source", "")), code[0] if code else None)
    errors = [o for o in (setup or {}).get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return None
    ename, evalue = str(errors[0].get("ename", "an error")), str(errors[0].get("evalue", ""))
    if "No module named 'utils'" in evalue:
        hint = (
            "open the notebook from the course's folder (the one that holds `utils/`), or on Colab run that cell again"
        )
    elif "No module named" in evalue:
        hint = "install what the course needs (`pip install -r requirements.txt`) in the environment of your kernel"
    else:
        hint = "restart the kernel, run that cell again, and read its error"
    return (
        f"your notebook's set-up cell (its first code cell) stopped with {ename}: {evalue.strip()[:200]} when you "
        "last ran it. The grader runs the lesson's own set-up, so this cost no points; but where you ran it, "
        f"the cells after it could not work: {hint}."
    )
