"""nbgrader, with the course folder anywhere (not inside the course's repository): the learners' `utils/`
and `figures/` (from a class release) put beside the notebook in `source/lesson01/` travel with it.
`generate_assignment` copies them into `release/lesson01/`, what the students fetch, and `autograde`
copies them over whatever the student handed in, so the set-up cell finds the course's own helpers in
the notebook's folder, and a student's edited checks are not the ones that run."""

import csv
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from tests.test_nbgrader import ASSIGNMENT, LESSON, NBGRADER
from utils import course
from utils.instructor import build

pytest.importorskip("nbgrader")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A course folder outside any repository; a perfect student who also hands in a forged `utils/checks`."""
    top = tmp_path_factory.mktemp("nbgrader-anywhere")
    release = top / "attention-class"
    build.write_release(release, "someone/attention-class", upto=1)
    root = top / "spring"
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (source / LESSON.filename).write_bytes((course.SOLUTIONS / LESSON.filename).read_bytes())
    shutil.copytree(release / "utils", source / "utils")
    shutil.copytree(release / "figures", source / "figures")

    perfect = root / "submitted" / "perfect" / ASSIGNMENT
    shutil.copytree(release / "utils", perfect / "utils")  # what the student fetched, with the checks forged
    forged = perfect / "utils" / "checks" / "__init__.py"
    forged.write_text("def __getattr__(name):\n    return lambda *args, **kwargs: print('✔ forged')\n")
    learner = nbformat.read(course.NOTEBOOKS / LESSON.filename, as_version=4)
    solution = nbformat.read(course.SOLUTIONS / LESSON.filename, as_version=4)
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in solution.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in learner.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
    nbformat.write(learner, perfect / LESSON.filename)
    lazy = root / "submitted" / "lazy" / ASSIGNMENT  # the stubs as given, and the forged checks
    shutil.copytree(perfect / "utils", lazy / "utils")
    shutil.copy(course.NOTEBOOKS / LESSON.filename, lazy / LESSON.filename)

    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment.get("PATH", "")
    environment["MPLBACKEND"] = "Agg"
    finished = subprocess.run(
        [sys.executable, "-c", NBGRADER, str(root), ASSIGNMENT, "perfect", "lazy"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    with open(root / "grades.csv", newline="") as file:
        rows = {row["student_id"]: row for row in csv.DictReader(file)}
    return root, rows


def test_the_students_fetch_the_helpers_with_the_notebook(graded):
    root, _ = graded
    released = root / "release" / ASSIGNMENT
    assert (released / LESSON.filename).is_file() and (released / "utils" / "checks" / "lesson01.py").is_file()
    assert (released / "figures").is_dir() and not (released / "utils" / "instructor").exists()


def test_autograde_runs_the_courses_helpers_not_the_students(graded):
    root, rows = graded
    maximum = float(len(course.EXERCISES[LESSON.stem]))
    assert float(rows["perfect"]["score"]) == maximum and float(rows["lazy"]["score"]) == 0.0
    checks = root / "autograded" / "lazy" / ASSIGNMENT / "utils" / "checks" / "__init__.py"
    assert "forged" not in checks.read_text()
