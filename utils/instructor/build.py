"""Build the learner's notebooks from the solutions.

    python -m utils.build                    # write notebooks/ (and README's lesson table)
    python -m utils.build --check            # exit 1, naming the stale files, if a build would change anything
    python -m utils.build --execute [STEM]   # first run solution notebooks in place, storing their outputs
    python -m utils.build --repo OWNER/REPO  # point the Colab badges and set-up at another repository
    python -m utils.build --release DIR [--repo OWNER/REPO] [--upto NN]  # the class's repository: no solution

In a learner's copy every `### BEGIN SOLUTION` ... `### END SOLUTION` region becomes a
"your code here" stub that raises `NotImplementedError`, every `### BEGIN HIDDEN TESTS`
... `### END HIDDEN TESTS` region disappears, and outputs are cleared. Everything is
built in memory first: a marker out of place stops the build, naming the notebook and
the cell, before a single file is written.

A release is what an instructor publishes for a class: the learner copies, the helpers
the lessons import (`utils/` without the instructor's tools), the figures, the
requirements and a learners' README, every Colab badge and set-up pointing at the
release's repository. Nothing in it comes from a solution region or a hidden test.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

from utils import course

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("your code here")')
KEPT_CELL_METADATA = ("nbgrader", "tags", "id", "deletable", "editable")
REPOSITORY_LINE = re.compile(r'^(COURSE_REPOSITORY = )"[^"]*"', re.MULTILINE)
REPOSITORY_PATTERN = r"[\w.-]+/[\w.-]+"  # OWNER/REPO, as in github.com/OWNER/REPO
RELEASE_REPOSITORY_LINE = re.compile(r'^COURSE_REPOSITORY = "[^"]*".*$', re.MULTILINE)
README_TABLE = re.compile(r"(<!-- lessons:start -->\n).*?(<!-- lessons:end -->)", re.DOTALL)


class BuildError(Exception):
    """A solution notebook that cannot be turned into a learner's copy."""


def strip_solutions(source: str, where: str) -> str:
    """A cell's source with solution regions stubbed out and hidden tests removed."""
    lines = source.split("\n")
    kept: list[str] = []
    region, opened_at = None, 0
    for number, line in enumerate(lines, start=1):
        marker = line.strip() if line.strip() in MARKERS else None
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if region:
                raise BuildError(f"{where}, line {number}: `{marker}` inside the `{region}` opened at line {opened_at}")
            region, opened_at = marker, number
            if marker == BEGIN_SOLUTION:
                indent = line[: len(line) - len(line.lstrip())]
                kept.extend(indent + stub for stub in STUB)
        elif marker in (END_SOLUTION, END_HIDDEN):
            opener = BEGIN_SOLUTION if marker == END_SOLUTION else BEGIN_HIDDEN
            if region != opener:
                raise BuildError(f"{where}, line {number}: `{marker}` with no `{opener}` before it")
            region = None
        elif region is None:
            kept.append(line)
    if region:
        raise BuildError(f"{where}, line {opened_at}: `{region}` is never closed")
    return "\n".join(kept)


def learner_copy(
    notebook: nbformat.NotebookNode, name: str, release_repository: str | None = None
) -> nbformat.NotebookNode:
    """The learner's version of one solution notebook; for a release, its Colab set-up fetches that repository."""
    copy = nbformat.from_dict(notebook)
    copy.metadata.pop("widgets", None)  # saved widget state holds the solution's drawings
    for index, cell in enumerate(copy.cells):
        cell.metadata = {key: value for key, value in cell.metadata.items() if key in KEPT_CELL_METADATA}
        if cell.cell_type != "code":
            for marker in MARKERS:
                if marker in cell.source:
                    raise BuildError(f"{name}, cell {index} ({cell.cell_type}): `{marker}` belongs in code cells only")
            continue
        cell.source = strip_solutions(cell.source, f"{name}, cell {index}")
        if release_repository:
            line = f'COURSE_REPOSITORY = "{release_repository}"  # where Colab fetches the course from'
            cell.source = RELEASE_REPOSITORY_LINE.sub(lambda _, line=line: line, cell.source)
        cell.outputs = []
        cell.execution_count = None
    return copy


def readme_table(lessons: list[course.Lesson], repository: str) -> str:
    """The README's lesson table: one row per lesson, with its "Open in Colab" badge."""
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    rows = ["| # | lesson | the question it answers | open |", "| --- | --- | --- | --- |"]
    for lesson in lessons:
        rows.append(
            f"| {lesson.number:02d} | [{lesson.title}](notebooks/{lesson.filename}) | {lesson.question} | "
            f"[![Open in Colab]({badge})]({course.colab_url(lesson, repository)}) |"
        )
    return "\n".join(rows) + "\n"


def plan(repository: str = course.REPOSITORY) -> dict[Path, str]:
    """Every file a build writes, with its text; raises `BuildError` before anything is written."""
    files: dict[Path, str] = {}
    present = []
    for lesson in course.LESSONS:
        source = course.SOLUTIONS / lesson.filename
        if not source.exists():
            continue
        present.append(lesson)
        name = f"solutions/{lesson.filename}"
        try:
            notebook = nbformat.read(source, as_version=4)
        except Exception as error:
            raise BuildError(f"{name}: not a readable notebook ({error})") from None
        learner = learner_copy(notebook, name)
        files[course.NOTEBOOKS / lesson.filename] = nbformat.writes(learner) + "\n"
    unknown = sorted(
        p.name for p in course.SOLUTIONS.glob("*.ipynb") if p.stem not in {lesson.stem for lesson in course.LESSONS}
    )
    if unknown:
        raise BuildError(f"solutions/ holds notebooks that are not lessons in utils/course.py: {', '.join(unknown)}")
    readme = course.ROOT / "README.md"
    if readme.exists():
        text = readme.read_text()
        if not README_TABLE.search(text):
            raise BuildError("README.md has no `<!-- lessons:start -->` ... `<!-- lessons:end -->` table to fill")
        files[readme] = README_TABLE.sub(lambda m: m.group(1) + readme_table(present, repository) + m.group(2), text)
    return files


def stale(files: dict[Path, str]) -> list[str]:
    """Files that differ from what a build would write, and learner copies with no solution."""
    names = [
        str(path.relative_to(course.ROOT))
        for path, text in files.items()
        if not path.exists() or path.read_text() != text
    ]
    extra = set(course.NOTEBOOKS.glob("*.ipynb")) - set(files)
    return sorted(names + [str(path.relative_to(course.ROOT)) + " (no solution)" for path in extra])


def _write(path: Path, text: str) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def build(repository: str = course.REPOSITORY) -> list[str]:
    """Write every learner copy and the README table; returns the files that changed."""
    files = plan(repository)
    changed = stale(files)
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            _write(path, text)
    for path in set(course.NOTEBOOKS.glob("*.ipynb")) - set(files):
        path.unlink()
    return changed


def set_repository(repository: str) -> None:
    """Point `utils/course.py` and every solution's Colab set-up at `OWNER/REPO`."""
    if not re.fullmatch(REPOSITORY_PATTERN, repository):
        raise BuildError(f"--repo takes OWNER/REPO, as in github.com/OWNER/REPO; got {repository!r}")
    config = Path(course.__file__)
    text = re.sub(r'^REPOSITORY = "[^"]*"', f'REPOSITORY = "{repository}"', config.read_text(), flags=re.MULTILINE)
    _write(config, text)
    for source in sorted(course.SOLUTIONS.glob("*.ipynb")):
        notebook = nbformat.read(source, as_version=4)
        before = [cell.source for cell in notebook.cells]
        for cell in notebook.cells:
            cell.source = REPOSITORY_LINE.sub(lambda m: f'{m.group(1)}"{repository}"', cell.source)
        if [cell.source for cell in notebook.cells] != before:
            _write(source, nbformat.writes(notebook) + "\n")


def execute(stems: list[str]) -> None:
    """Run solution notebooks in place, so that they are stored with their outputs."""
    from nbclient import NotebookClient

    for lesson in course.LESSONS:
        path = course.SOLUTIONS / lesson.filename
        if not path.exists() or (stems and lesson.stem not in stems and lesson.filename not in stems):
            continue
        print(f"executing {path.relative_to(course.ROOT)}", flush=True)
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(course.SOLUTIONS)}}
        ).execute()
        for cell in notebook.cells:
            cell.metadata.pop("execution", None)
        _write(path, nbformat.writes(notebook) + "\n")


# --- the class release -------------------------------------------------------------

RELEASE_MARK = ".course-release"  # lists the files a release wrote; only such a folder is ever rewritten
INSTRUCTOR_ONLY = ("instructor", "build.py", "grade.py", "benchmark.py", "figures.py")  # under utils/
# Helpers that lessons print as their own code (`course.show_code`), by the first lesson that does: the tiny GPT
# of `utils/model.py` holds earlier exercises' answers (lesson 07's heads, 08's mask, 09's positions), so it goes
# out with that lesson and no earlier, and `giveaways` counts its lines as shown by that lesson and the later ones.
SHOWN_HELPERS = {"model.py": 12}
RELEASE_README = Path(__file__).with_name("release_readme.md")
RELEASE_GITIGNORE = ".venv/\n__pycache__/\n*.pyc\n.ipynb_checkpoints/\n"
IGNORED_IN_RELEASE = {".git", "__pycache__", ".ipynb_checkpoints"}  # never written, never in the way


def release_readme(lessons: list[course.Lesson], repository: str) -> str:
    """The learners' README: the course's introduction, the lessons, how to start; no word of solutions."""
    intro = ""
    readme = course.ROOT / "README.md"
    if readme.exists():
        intro = readme.read_text().split("\n## Lessons", 1)[0].rstrip() + "\n"
    text = RELEASE_README.read_text().replace("<!-- intro -->\n", intro)
    text = text.replace("<!-- lessons -->\n", readme_table(lessons, repository))
    return text.replace("{repository}", repository).replace("{name}", repository.split("/")[1])


def _shown_helper_lines(lesson: course.Lesson) -> set[str]:
    """The lines (as code) of the helpers `lesson` prints as its own code (`SHOWN_HELPERS`)."""
    lines: set[str] = set()
    for name, first in SHOWN_HELPERS.items():
        if lesson.number >= first:
            lines |= set(_code_lines((course.ROOT / "utils" / name).read_text()))
    return lines


def _learner_utils(repository: str, lessons: list[course.Lesson] | None = None) -> dict[str, bytes]:
    """`utils/` as lessons import it: without the instructor's tools and their `python -m` entry points, nor a
    helper of `SHOWN_HELPERS` before the first lesson that shows it is released (`lessons`; None: all)."""
    root = course.ROOT / "utils"
    last = max((lesson.number for lesson in lessons), default=0) if lessons is not None else None
    files = {}
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_dir() or parts[0] in INSTRUCTOR_ONLY or any(p.startswith(".") or p == "__pycache__" for p in parts):
            continue
        if last is not None and len(parts) == 1 and SHOWN_HELPERS.get(parts[0], 0) > last:
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        content = path.read_bytes()
        if parts == ("course.py",):
            text = content.decode()
            text = re.sub(r"^# Change it with one command:.*\n", "", text, flags=re.MULTILINE)
            text = re.sub(r'^REPOSITORY = "[^"]*"', f'REPOSITORY = "{repository}"', text, flags=re.MULTILINE)
            content = text.encode()
        files["/".join(("utils",) + parts)] = content
    return files


def released_lessons(upto: int | None = None) -> list[course.Lesson]:
    """The lessons a release holds: those with a solution notebook, up to lesson `upto` if given."""
    return [
        lesson
        for lesson in course.LESSONS
        if (course.SOLUTIONS / lesson.filename).exists() and (upto is None or lesson.number <= upto)
    ]


def _code_lines(source: str) -> list[str]:
    """A cell's lines as code: indentation and a trailing `  # comment` stripped."""
    return [line.split("  # ")[0].strip() for line in source.splitlines()]


def giveaways(lessons: list[course.Lesson]) -> list[str]:
    """Where a lesson's own code shows three lines or more of an earlier exercise's solution that the earlier
    lesson does not show itself (a later lesson that writes an earlier exercise out in full): fine once the class
    has done that exercise, a give-away when both are handed out at once."""
    regions: dict[tuple[course.Lesson, str], list[str]] = {}
    shown: dict[course.Lesson, set[str]] = {}
    for lesson in lessons:
        notebook = nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4)
        shown[lesson] = _shown_helper_lines(lesson)
        for cell in notebook.cells:
            public = cell.source if cell.cell_type != "code" else strip_solutions(cell.source, lesson.filename)
            shown[lesson] |= set(_code_lines(public))
            if cell.cell_type != "code" or BEGIN_SOLUTION not in cell.source:
                continue
            exercise = cell.metadata.get("nbgrader", {}).get("grade_id", "an exercise")
            for region in cell.source.split(BEGIN_SOLUTION)[1:]:
                lines = [line for line in _code_lines(region.split(END_SOLUTION)[0]) if len(line) >= 8]
                regions.setdefault((lesson, exercise), []).extend(lines)
    notes = []
    for (lesson, exercise), lines in regions.items():
        for later in lessons:
            if later.number <= lesson.number:
                continue
            seen = [line for line in lines if line in shown[later] and line not in shown[lesson]]
            if len(seen) >= 3:
                notes.append(
                    f"lesson {later.number:02d} shows {len(seen)} of the {len(lines)} lines of lesson "
                    f"{lesson.number:02d}'s `{exercise}` solution"
                )
    return notes


def release_plan(repository: str = course.REPOSITORY, upto: int | None = None) -> dict[str, bytes]:
    """Every file of a class release, by its path in the release; raises `BuildError` before anything is written."""
    if not re.fullmatch(REPOSITORY_PATTERN, repository):
        raise BuildError(f"--repo takes OWNER/REPO, as in github.com/OWNER/REPO; got {repository!r}")
    files: dict[str, bytes] = {}
    present = []
    for lesson in released_lessons(upto):
        source = course.SOLUTIONS / lesson.filename
        present.append(lesson)
        name = f"solutions/{lesson.filename}"
        try:
            notebook = nbformat.read(source, as_version=4)
        except Exception as error:
            raise BuildError(f"{name}: not a readable notebook ({error})") from None
        learner = learner_copy(notebook, name, release_repository=repository)
        files[f"notebooks/{lesson.filename}"] = (nbformat.writes(learner) + "\n").encode()
    files.update(_learner_utils(repository, present))
    for path in sorted(course.FIGURES.glob("*")):
        if path.is_file() and not path.name.startswith("."):
            files[f"figures/{path.name}"] = path.read_bytes()
    files["requirements.txt"] = (course.ROOT / "requirements.txt").read_bytes()
    files["NOTATION.md"] = (course.ROOT / "NOTATION.md").read_bytes()  # every lesson links to it
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING"):
        if (course.ROOT / name).is_file():
            files[name] = (course.ROOT / name).read_bytes()
    files["README.md"] = release_readme(present, repository).encode()
    files[".gitignore"] = RELEASE_GITIGNORE.encode()
    files[RELEASE_MARK] = (
        "# A class release of the course, written by `python -m utils.build --release`; the files it wrote:\n"
        + "".join(f"{name}\n" for name in sorted(files))
    ).encode()
    return files


def _previous_release(folder: Path) -> set[str] | None:
    """The files an earlier release wrote into `folder`, or None if `folder` is not one (an empty folder is)."""
    entries = [entry for entry in folder.iterdir() if entry.name not in IGNORED_IN_RELEASE]
    if not entries:
        return set()
    mark = folder / RELEASE_MARK
    if not mark.is_file():
        return None
    return {line for line in mark.read_text().splitlines() if line and not line.startswith("#")} | {RELEASE_MARK}


def write_release(folder: Path, repository: str = course.REPOSITORY, upto: int | None = None) -> list[str]:
    """Write a class release into `folder` (new, empty, or an earlier release); returns the files written."""
    files = release_plan(repository, upto)
    folder = folder.resolve()
    if folder == course.ROOT or course.ROOT in folder.parents:
        raise BuildError(f"{folder} is inside the course repository: a release goes in a folder of its own")
    if folder.exists() and not folder.is_dir():
        raise BuildError(f"{folder} is a file, not a folder")
    if folder.exists():
        previous = _previous_release(folder)
        if previous is None:
            raise BuildError(
                f"{folder} is not empty and is not an earlier release (it has no {RELEASE_MARK}): "
                "nothing written. Give a new or empty folder, or one an earlier `--release` wrote."
            )
        strangers = sorted(
            str(path.relative_to(folder))
            for path in folder.rglob("*")
            if path.is_file()
            and not IGNORED_IN_RELEASE & set(path.relative_to(folder).parts)
            and str(path.relative_to(folder)) not in previous
        )
        if strangers:
            raise BuildError(
                f"{folder} is an earlier release, but holds files a release did not write: {', '.join(strangers)}. "
                "Nothing written: move them away (a release must hold only what it writes)."
            )
        for name in sorted(previous - set(files)):
            stale_file = (folder / name).resolve()
            if folder in stale_file.parents and stale_file.is_file():
                stale_file.unlink()
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not IGNORED_IN_RELEASE & set(directory.relative_to(folder).parts) and not any(directory.iterdir()):
            directory.rmdir()  # a folder left empty by files an earlier release had
    return sorted(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 and name the stale files")
    parser.add_argument(
        "--execute", nargs="*", metavar="STEM", help="run these solution notebooks (all if none named) first"
    )
    parser.add_argument("--repo", metavar="OWNER/REPO", help="set the GitHub repository for Colab, then build")
    parser.add_argument(
        "--release",
        metavar="DIR",
        help="write a class release into DIR (new, empty, or an earlier release): no solution, no hidden test; "
        "with --repo, its Colab badges and set-up point at that repository (this course is left as it is)",
    )
    parser.add_argument(
        "--upto", type=int, metavar="NN", help="with --release: only lessons up to NN (release as the class goes)"
    )
    args = parser.parse_args(argv)
    if args.release and (args.check or args.execute is not None):
        parser.error("--release goes alone, or with --repo and --upto")
    if args.upto is not None and not args.release:
        parser.error("--upto goes with --release")
    try:
        if args.release:
            repository = args.repo or course.REPOSITORY
            written = write_release(Path(args.release), repository, args.upto)
            size = sum((Path(args.release) / name).stat().st_size for name in written)
            lessons = released_lessons(args.upto)
            print(
                f"wrote a class release of {len(lessons)} lessons, {len(written)} files ({size / 1e6:.1f} MB), "
                f"to {args.release}, its Colab badges and set-up pointing at github.com/{repository}"
            )
            if not args.repo:
                print(f"(no --repo given: that is this course's own repository, {course.REPOSITORY})")
            for note in giveaways(lessons):
                print(f"note: {note}; hand a lesson out once the class has done the ones it gives away (--upto NN)")
            return 0
        if args.check:
            names = stale(plan())
            if names:
                print("stale (run `python -m utils.build`):\n  " + "\n  ".join(names))
                return 1
            print("notebooks/ and README.md are up to date with solutions/")
            return 0
        if args.repo:
            plan(args.repo)  # every solution must build before anything is rewritten
            set_repository(args.repo)
        if args.execute is not None:
            execute(args.execute)
        changed = build(args.repo or course.REPOSITORY)
    except BuildError as error:
        print(f"build stopped, nothing written: {error}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(changed) if changed else "nothing to do: notebooks/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
