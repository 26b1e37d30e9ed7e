"""Build the learner's notebooks from the solutions.

    python -m utils.build                    # write notebooks/ (and README's lesson table)
    python -m utils.build --check            # exit 1, naming the stale files, if a build would change anything
    python -m utils.build --execute [STEM]   # first run solution notebooks in place, storing their outputs
    python -m utils.build --repo OWNER/REPO  # point the Colab badges and set-up at another repository

In a learner's copy every `### BEGIN SOLUTION` ... `### END SOLUTION` region becomes a
"your code here" stub that raises `NotImplementedError`, every `### BEGIN HIDDEN TESTS`
... `### END HIDDEN TESTS` region disappears, and outputs are cleared. Everything is
built in memory first: a marker out of place stops the build, naming the notebook and
the cell, before a single file is written.
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


def learner_copy(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The learner's version of one solution notebook."""
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
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 and name the stale files")
    parser.add_argument(
        "--execute", nargs="*", metavar="STEM", help="run these solution notebooks (all if none named) first"
    )
    parser.add_argument("--repo", metavar="OWNER/REPO", help="set the GitHub repository for Colab, then build")
    args = parser.parse_args(argv)
    try:
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
