"""nbgrader, end to end, in its own course layout: `source/lesson01/` from solutions/ as it is,
`generate_assignment`, `autograde` of a perfect and of an empty student, `export`. The notebooks
find the course's helpers by themselves: the nbgrader course folder lives inside a copy of the
course repository (`repository/classes/spring/`, beside `repository/utils/`), and nothing else is
set (no PYTHONPATH, no package installed)."""

import csv
import os
import subprocess
import sys

import nbformat
import pytest

from utils import course

pytest.importorskip("nbgrader")

LESSON = course.LESSONS[0]
ASSIGNMENT = "lesson01"


# generate, autograde each student, export: nbgrader's Python API in one process of its own (one start
# of nbgrader, not three), which leaves pytest's working folder and logging alone.
NBGRADER = """
import sys
from traitlets.config import Config
from nbgrader.apps import NbGraderAPI
from nbgrader.apps.exportapp import ExportApp

root, assignment, students = sys.argv[1], sys.argv[2], sys.argv[3:]
config = Config()
config.CourseDirectory.root = root
config.CourseDirectory.db_url = f"sqlite:///{root}/gradebook.db"
config.ExecutePreprocessor.timeout = 120
config.CsvExportPlugin.to = f"{root}/grades.csv"
api = NbGraderAPI(config=config)
steps = [("generate_assignment", lambda: api.generate_assignment(assignment))]
steps += [(f"autograde {s}", lambda s=s: api.autograde(assignment, s)) for s in students]
for name, step in steps:
    result = step()
    print(f"--- {name}\\n{result.get('log', '')}")
    if not result["success"]:
        sys.exit(f"{name} failed:\\n{result.get('error', '')}")
ExportApp(coursedir=api.coursedir, parent=api).start()
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A course graded by nbgrader: the `grades.csv` that `nbgrader export` writes, by student."""
    repository = tmp_path_factory.mktemp("nbgrader") / "repository"
    repository.mkdir()
    (repository / "utils").symlink_to(course.ROOT / "utils", target_is_directory=True)
    root = repository / "classes" / "spring"
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (source / LESSON.filename).write_bytes((course.SOLUTIONS / LESSON.filename).read_bytes())

    # The perfect student: the learner's copy with the solutions written in.
    learner = nbformat.read(course.NOTEBOOKS / LESSON.filename, as_version=4)
    solution = nbformat.read(course.SOLUTIONS / LESSON.filename, as_version=4)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in solution.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    filled = 0
    for cell in learner.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
            filled += 1
    assert filled == len(course.EXERCISES[LESSON.stem])
    perfect = root / "submitted" / "perfect" / ASSIGNMENT
    perfect.mkdir(parents=True)
    nbformat.write(learner, perfect / LESSON.filename)

    # The empty student: the learner's copy as it is, every stub untouched.
    empty = root / "submitted" / "empty" / ASSIGNMENT
    empty.mkdir(parents=True)
    (empty / LESSON.filename).write_bytes((course.NOTEBOOKS / LESSON.filename).read_bytes())

    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment.get("PATH", "")
    environment["MPLBACKEND"] = "Agg"
    finished = subprocess.run(
        [sys.executable, "-c", NBGRADER, str(root), ASSIGNMENT, "perfect", "empty"],
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


def test_generate_assignment_takes_a_lesson_as_it_is(graded):
    root, _ = graded
    released = nbformat.read(root / "release" / ASSIGNMENT / LESSON.filename, as_version=4)
    text = nbformat.writes(released)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    points = [c.metadata["nbgrader"]["points"] for c in released.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert points == [1] * len(course.EXERCISES[LESSON.stem])
    assert sum("raise NotImplementedError" in cell.source for cell in released.cells) == len(points)


def test_a_perfect_student_gets_full_marks_and_an_empty_one_zero(graded):
    _, rows = graded
    maximum = float(len(course.EXERCISES[LESSON.stem]))
    assert set(rows) == {"perfect", "empty"}
    assert float(rows["perfect"]["max_score"]) == maximum
    assert float(rows["perfect"]["score"]) == maximum
    assert float(rows["empty"]["score"]) == 0.0


def test_every_cell_of_the_perfect_student_ran_with_the_courses_helpers(graded):
    """The set-up cell found the repository's `utils/` from the nbgrader course inside it: no cell failed."""
    root, _ = graded
    notebook = nbformat.read(root / "autograded" / "perfect" / ASSIGNMENT / LESSON.filename, as_version=4)
    errors = [
        (cell.source.splitlines()[0], output.get("evalue"))
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
    empty = nbformat.read(root / "autograded" / "empty" / ASSIGNMENT / LESSON.filename, as_version=4)
    empty_errors = [o.get("evalue", "") for c in empty.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert empty_errors and not any("No module named" in error for error in empty_errors)
    assert any("still raises NotImplementedError" in error for error in empty_errors)
