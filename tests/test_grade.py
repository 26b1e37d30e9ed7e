"""The grader: full marks for the solutions, zero for the untouched learner copies, and a
clear row for every hostile submission, without ever crashing or losing a student."""

import csv
import json
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_notebook

from utils import course
from utils.instructor import grade
from utils.instructor.grade import sandbox

LESSON = "01_averaging.ipynb"


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(course.SOLUTIONS / LESSON, as_version=4)


def _with_cell(name: str, source: str) -> nbformat.NotebookNode:
    """The solution notebook with the exercise cell `name` replaced by `source`."""
    notebook = _solution()
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == name:
            cell.source = source
    return notebook


UNIFORM = "def uniform_weights(n):\n    return torch.ones(n, n) / n\n"
HOSTILE = {
    "dies": _with_cell("uniform_weights", "import os\nos._exit(1)\n" + UNIFORM),
    "segfaults": _with_cell("uniform_weights", "import ctypes\nctypes.string_at(0)\n" + UNIFORM),
    "loops": _with_cell("uniform_weights", "while True:\n    pass\n" + UNIFORM),
    "floods": _with_cell("uniform_weights", "while True:\n    print('spam ' * 200)\n" + UNIFORM),
    "renames": _with_cell("average", "def my_average(X):\n    return X.mean(dim=0)\n"),
    "hidden": _with_cell("average", "def average(X):\n    return X.float().mean(dim=0)\n"),
    "tampers": _with_cell(
        "uniform_weights",
        "from utils import checks\nchecks.check_uniform_weights = lambda f: print('✔ fine')\n"
        "def uniform_weights(n):\n    return torch.eye(n)\n",
    ),
    "syntax": _with_cell("average", "def average(X)\n    return X.mean(dim=0)\n"),
}


def _class(tmp_path):
    """A class with one student per case, all submitting lesson 01."""
    root = tmp_path / "submissions"
    for student, notebook in HOSTILE.items():
        (root / student).mkdir(parents=True)
        nbformat.write(notebook, root / student / LESSON)
    for student in ("ace", "blank", "shuffled", "duplicated", "untagged", "unreadable", "empty", "blanked_checks"):
        (root / student).mkdir(parents=True)
    shutil.copy(course.SOLUTIONS / LESSON, root / "ace" / LESSON)
    shutil.copy(course.NOTEBOOKS / LESSON, root / "blank" / LESSON)
    shuffled = _solution()
    shuffled.cells.reverse()
    nbformat.write(shuffled, root / "shuffled" / LESSON)
    duplicated = _solution()
    first = next(c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "average")
    wrong = nbformat.from_dict(dict(first, id="old-copy", source="def average(X):\n    return X.sum(dim=0)\n"))
    duplicated.cells.insert(duplicated.cells.index(first), wrong)  # an old wrong copy above the right one
    nbformat.write(duplicated, root / "duplicated" / LESSON)
    untagged = _solution()
    for cell in untagged.cells:
        cell.metadata = {}
    nbformat.write(untagged, root / "untagged" / LESSON)
    (root / "unreadable" / LESSON).write_text('{"cells": [ this is not json')
    nbformat.write(new_notebook(), root / "empty" / LESSON)
    blanked = _solution()
    for cell in blanked.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = ""
    nbformat.write(blanked, root / "blanked_checks" / LESSON)
    (root / "ace" / "notes.txt").write_text("not a notebook")
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("grading")
    submissions, out = _class(tmp_path), tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "utils.grade",
        str(submissions),
        "--out",
        str(out),
        "--cell-timeout",
        "8",
        "--notebook-timeout",
        "120",
        "--max-output",
        "200000",
    ]
    if sandbox.problem():  # the grader refuses to run students' code unprotected unless told to
        command.append(sandbox.RISK_FLAG)
    finished = subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=900)
    with open(out / "gradebook.csv") as file:
        rows = {(row["student"], row["exercise"]): row for row in csv.DictReader(file)}
    return finished, rows, out


def _row(graded, student, exercise):
    return graded[1][(student, exercise)]


def test_the_grader_exits_0_and_grades_every_student(graded):
    finished, rows, _ = graded
    assert finished.returncode == 0, finished.stderr
    students = {student for student, _ in rows}
    assert students == set(HOSTILE) | {
        "ace",
        "blank",
        "shuffled",
        "duplicated",
        "untagged",
        "unreadable",
        "empty",
        "blanked_checks",
    }
    assert all(set(row) >= {"student", "lesson", "exercise", "points", "max_points", "status"} for row in rows.values())
    assert "ignoring ace/notes.txt" in finished.stdout
    assert "graded 16 notebooks of 16 students" in finished.stdout


@pytest.mark.parametrize("student", ["ace", "shuffled", "duplicated", "untagged", "blanked_checks"])
def test_right_answers_get_full_marks_however_the_notebook_was_rearranged(graded, student):
    for exercise in ("average", "uniform_weights"):
        row = _row(graded, student, exercise)
        assert (row["status"], row["points"], row["max_points"]) == ("passed", "1", "1"), row


@pytest.mark.parametrize(
    "student, exercise, status, message",
    [
        ("blank", "average", "not attempted", "not written yet"),
        ("blank", "uniform_weights", "not attempted", "not written yet"),
        ("unreadable", "average", "unreadable", "not a notebook Jupyter can read (it is cut short"),
        ("empty", "average", "missing", "no cell defines `average`"),
        ("empty", "uniform_weights", "missing", "no cell defines `uniform_weights`"),
        ("dies", "uniform_weights", "kernel died", "kernel died; it stopped in your cell for `uniform_weights`"),
        ("segfaults", "uniform_weights", "kernel died", "which begins `import ctypes` / `ctypes.string_at(0)`"),
        ("loops", "uniform_weights", "timeout", "more than 8 s; the cell begins `while True:` / `pass`"),
        ("floods", "uniform_weights", "output limit", "output grew past the limit"),
        ("renames", "average", "missing", "`average` is not defined: was it renamed?"),
        ("hidden", "average", "hidden tests failed", "hidden tests of `average` failed"),
        ("tampers", "uniform_weights", "failed", "at (0, 0) it is 1 but should be 0.5"),
        ("syntax", "average", "error", "SyntaxError"),
    ],
)
def test_each_hostile_case_gets_a_clear_row(graded, student, exercise, status, message):
    row = _row(graded, student, exercise)
    assert row["status"] == status and message in row["message"] and row["points"] == "0", row


@pytest.mark.parametrize("student", ["dies", "segfaults", "loops", "floods", "tampers"])
def test_exercises_that_ran_before_the_failure_keep_their_points(graded, student):
    row = _row(graded, student, "average")
    assert (row["status"], row["points"]) == ("passed", "1"), row


def test_summary_has_every_student_and_the_integrity_flags(graded):
    out = graded[2]
    with open(out / "summary.csv") as file:
        summary = {row["student"]: row for row in csv.DictReader(file)}
    assert set(summary) == {student for student, _ in graded[1]}
    assert (summary["ace"]["total"], summary["ace"]["maximum"], summary["ace"]["percent"]) == ("2", "2", "100.0")
    assert summary["ace"]["integrity"] == "" and "check_average` deleted" not in summary["ace"]["integrity"]
    assert "check `check_average` edited" in summary["blanked_checks"]["integrity"]
    assert summary["untagged"]["integrity"] == "" and "deleted" in summary["empty"]["integrity"]
    assert "patched at run time: utils.checks.check_uniform_weights" in summary["tampers"]["integrity"]
    assert summary["unreadable"]["integrity"] == "01_averaging: unreadable file"
    assert (out / "class.png").exists() and "instructor/" in (out / "README.txt").read_text()


def test_feedback_names_hidden_tests_but_never_shows_them(graded):
    out = graded[2]
    text = (out / "feedback" / "hidden" / "01_averaging.md").read_text()
    assert "hidden tests of `average` failed" in text
    hidden_source = _solution().cells
    hidden = [
        c.source.split("### BEGIN HIDDEN TESTS")[1] for c in hidden_source if "### BEGIN HIDDEN TESTS" in c.source
    ]
    assert hidden and all(line.strip() not in text for h in hidden for line in h.splitlines() if len(line.strip()) > 10)
    assert (out / "feedback" / "ace" / "01_averaging.md").read_text().startswith("# 01_averaging: 2 of 2 points")
    assert (out / "executed" / "ace" / LESSON).exists()
    assert all(
        line.strip() not in (out / "executed" / "hidden" / LESSON).read_text()
        for h in hidden
        for line in h.splitlines()
        if len(line.strip()) > 10
    )


def test_usage_errors_exit_2(tmp_path):
    assert grade.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert grade.main([]) == 2


def test_points_come_from_nbgrader_metadata():
    plan = grade.assemble(_solution(), _solution())
    assert [(e.name, e.points) for e in plan.exercises] == [("average", 1.0), ("uniform_weights", 1.0)]
    assert plan.exercises[0].hidden is not None


def test_a_result_file_the_kernel_never_wrote_is_a_row_not_a_crash():
    plan = grade.assemble(_solution(), _solution())
    rows = grade.score("s", "01_averaging", plan, {"cells": {}}, "time-out: the notebook ran for more than 5 s")
    assert [r.status for r in rows] == ["timeout", "timeout"]
    rows = grade.score("s", "01_averaging", plan, json.loads('{"cells": {}, "died": "kernel died"}'), None)
    assert [r.status for r in rows] == ["kernel died", "kernel died"]


def test_every_lesson_is_gradable_and_its_solution_notebook_scores_full_marks_in_assembly():
    """Every graded cell of every lesson is found in its own solution notebook."""
    for lesson in course.LESSONS:
        path = course.SOLUTIONS / lesson.filename
        if not path.exists():
            continue
        plan = grade.assemble(nbformat.read(path, as_version=4), nbformat.read(path, as_version=4))
        assert [e.name for e in plan.exercises] == list(course.EXERCISES[lesson.stem])
        assert all(e.found and e.check is not None and e.points > 0 for e in plan.exercises)


def test_without_a_sandbox_the_grader_refuses_unless_told(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "problem", lambda: "`unshare` (util-linux) is not installed")
    (tmp_path / "submissions").mkdir()
    assert grade.main([str(tmp_path / "submissions"), "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err
    assert "cannot make the sandbox" in said and "can read the solutions" in said and sandbox.RISK_FLAG in said
    assert not (tmp_path / "out").exists()


def test_the_sandbox_holds_no_course_file_but_the_learners_utils(tmp_path):
    if sandbox.problem():
        pytest.skip(f"the grader's sandbox cannot be made on this machine: {sandbox.problem()}")
    sandbox.learner_files(tmp_path)
    probe = "import os, sys; print(os.path.exists(sys.argv[1]), os.path.exists('utils/checks'), os.path.exists('utils/instructor'))"
    command = sandbox.wrap([sys.executable, "-c", probe, str(course.SOLUTIONS)], tmp_path)
    seen = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert seen.stdout.split() == ["False", "True", "False"], seen.stderr


def test_the_whole_course_grades_full_marks_for_the_solutions_and_zero_for_the_learner_copies(tmp_path):
    """Every exercise of every lesson through the real grader: the solution notebooks earn every point
    (lesson 13's Triton kernel included, run in the student's sandboxed kernel), the learner copies none."""
    submissions = tmp_path / "submissions"
    for student, folder in (("perfect", course.SOLUTIONS), ("untouched", course.NOTEBOOKS)):
        (submissions / student).mkdir(parents=True)
        for lesson in course.LESSONS:
            shutil.copy(folder / lesson.filename, submissions / student / lesson.filename)
    command = [sys.executable, "-m", "utils.grade", str(submissions), "--out", str(tmp_path / "out")]
    if sandbox.problem():
        command.append(sandbox.RISK_FLAG)
    finished = subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr
    with open(tmp_path / "out" / "summary.csv") as file:
        summary = {row["student"]: row for row in csv.DictReader(file)}
    solutions = [nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4) for lesson in course.LESSONS]
    maximum = sum(e.points for notebook in solutions for e in grade.assemble(notebook, notebook).exercises)
    assert float(summary["perfect"]["total"]) == float(summary["perfect"]["maximum"]) == maximum, summary["perfect"]
    assert float(summary["untouched"]["total"]) == 0, summary["untouched"]


def test_a_read_only_folder_under_tmp_stays_visible_in_the_sandbox(tmp_path, monkeypatch):
    """A course (and its virtual environment) cloned under /tmp: the sandbox's own /tmp must not hide it."""
    if sandbox.problem():
        pytest.skip(f"the grader's sandbox cannot be made on this machine: {sandbox.problem()}")
    shared = tmp_path / "venv"
    shared.mkdir()
    (shared / "marker").write_text("here")
    readonly = sandbox.readonly_paths
    monkeypatch.setattr(sandbox, "readonly_paths", lambda: [*readonly(), str(shared)])
    work = tmp_path / "work"
    work.mkdir()
    probe = [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read())", str(shared / "marker")]
    done = subprocess.run(sandbox.wrap(probe, work), capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "here", done.stderr
