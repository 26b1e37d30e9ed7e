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


def _nbgrader(course_folder, *arguments) -> str:
    """`python -m nbgrader ...` run in the course folder (its nbgrader_config.py), offline."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "JUPYTER_CONFIG_DIR")}
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment.get("PATH", "")
    environment["MPLBACKEND"] = "Agg"
    finished = subprocess.run(
        [sys.executable, "-m", "nbgrader", *arguments],
        cwd=course_folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout + finished.stderr


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
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{root / 'gradebook.db'}'\n"
        "c.ExecutePreprocessor.timeout = 120\n"
    )
    _nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")

    # The perfect student: nbgrader's release of the lesson with the solutions written in.
    released = nbformat.read(root / "release" / ASSIGNMENT / LESSON.filename, as_version=4)
    solution = nbformat.read(course.SOLUTIONS / LESSON.filename, as_version=4)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in solution.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    filled = 0
    for cell in released.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[grade_id]
            filled += 1
    assert filled == len(course.EXERCISES[LESSON.stem])
    perfect = root / "submitted" / "perfect" / ASSIGNMENT
    perfect.mkdir(parents=True)
    nbformat.write(released, perfect / LESSON.filename)

    # The empty student: the learner's copy from notebooks/, as it is, every stub untouched.
    empty = root / "submitted" / "empty" / ASSIGNMENT
    empty.mkdir(parents=True)
    (empty / LESSON.filename).write_bytes((course.NOTEBOOKS / LESSON.filename).read_bytes())

    log = _nbgrader(root, "autograde", ASSIGNMENT, "--force")
    _nbgrader(root, "export")
    with open(root / "grades.csv", newline="") as file:
        rows = {row["student_id"]: row for row in csv.DictReader(file)}
    return root, rows, log


def test_generate_assignment_takes_a_lesson_as_it_is(graded):
    root, _, _ = graded
    released = nbformat.read(root / "release" / ASSIGNMENT / LESSON.filename, as_version=4)
    text = nbformat.writes(released)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    points = [c.metadata["nbgrader"]["points"] for c in released.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert points == [1] * len(course.EXERCISES[LESSON.stem])
    assert sum("raise NotImplementedError" in cell.source for cell in released.cells) == len(points)


def test_a_perfect_student_gets_full_marks_and_an_empty_one_zero(graded):
    _, rows, _ = graded
    maximum = float(len(course.EXERCISES[LESSON.stem]))
    assert set(rows) == {"perfect", "empty"}
    assert float(rows["perfect"]["max_score"]) == maximum
    assert float(rows["perfect"]["score"]) == maximum
    assert float(rows["empty"]["score"]) == 0.0


def test_every_cell_of_the_perfect_student_ran_with_the_courses_helpers(graded):
    """The set-up cell found the repository's `utils/` from the nbgrader course inside it: no cell failed."""
    root, _, _ = graded
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
