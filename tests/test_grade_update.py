"""Grading never destroys earlier results: a student regraded with `--student`, or a folder of late
submissions graded into the same `--out`, updates those students' rows and keeps everyone else's; and
the files are replaced only once the new ones are complete."""

import csv
import importlib
import shutil
import subprocess
import sys

import pytest

from utils import course
from utils.instructor.grade import report, sandbox

grading = importlib.import_module("utils.instructor.grade.main")  # the module (the package exports its `main`)

FIRST, SECOND = "01_averaging.ipynb", "02_weighted_average.ipynb"


def _grade(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "utils.grade", *arguments, "--cell-timeout", "30", "--notebook-timeout", "120"]
    command.append(sandbox.RISK_FLAG)  # the sandbox is not the point here
    return subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=600)


def _read(path) -> dict:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if "exercise" in rows[0]:
        return {(r["student"], r["lesson"], r["exercise"]): r for r in rows}
    return {r["student"]: r for r in rows}


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """A term as an instructor lives it: the class graded, one student regraded, late submissions graded."""
    root = tmp_path_factory.mktemp("term")
    submissions, late, out = root / "submissions", root / "late", root / "grades"
    for student, folder in (("ace", course.SOLUTIONS), ("blank", course.NOTEBOOKS)):
        (submissions / student).mkdir(parents=True)
        shutil.copy(folder / FIRST, submissions / student / FIRST)
    steps = {"class": _grade(str(submissions), "--out", str(out))}
    steps["class files"] = {name: _read(out / name) for name in ("gradebook.csv", "summary.csv")}
    shutil.copy(course.SOLUTIONS / FIRST, submissions / "blank" / FIRST)  # blank hands in a fixed notebook
    steps["regrade"] = _grade(str(submissions), "--out", str(out), "--student", "blank")
    steps["regrade files"] = {name: _read(out / name) for name in ("gradebook.csv", "summary.csv")}
    (late / "carol").mkdir(parents=True)  # a late student, and ace's late lesson 02 (not lesson 01 again)
    shutil.copy(course.SOLUTIONS / FIRST, late / "carol" / FIRST)
    (late / "ace").mkdir()
    shutil.copy(course.NOTEBOOKS / SECOND, late / "ace" / SECOND)
    steps["late"] = _grade(str(late), "--out", str(out))
    steps["late files"] = {name: _read(out / name) for name in ("gradebook.csv", "summary.csv")}
    steps["unknown"] = _grade(str(submissions), "--out", str(out), "--student", "nobody")
    steps["unknown files"] = {name: _read(out / name) for name in ("gradebook.csv", "summary.csv")}
    return steps


def test_the_class_is_graded(term):
    assert term["class"].returncode == 0, term["class"].stderr
    summary = term["class files"]["summary.csv"]
    assert (summary["ace"]["total"], summary["blank"]["total"]) == ("2", "0")


def test_regrading_one_student_updates_her_rows_and_keeps_the_others(term):
    assert term["regrade"].returncode == 0, term["regrade"].stderr
    assert "[1/1] blank · 01_averaging: 2/2" in term["regrade"].stdout and "ace ·" not in term["regrade"].stdout
    before, after = term["class files"], term["regrade files"]
    assert set(after["summary.csv"]) == {"ace", "blank"}
    assert after["summary.csv"]["blank"]["total"] == "2" and after["summary.csv"]["ace"] == before["summary.csv"]["ace"]
    ace = {key: row for key, row in after["gradebook.csv"].items() if key[0] == "ace"}
    assert ace == {key: row for key, row in before["gradebook.csv"].items() if key[0] == "ace"}


def test_late_submissions_add_their_students_and_lessons_and_erase_nothing(term):
    assert term["late"].returncode == 0, term["late"].stderr
    summary, book = term["late files"]["summary.csv"], term["late files"]["gradebook.csv"]
    assert set(summary) == {"ace", "blank", "carol"}
    assert [summary[s]["01_averaging"] for s in ("ace", "blank", "carol")] == ["2", "2", "2"]  # ace's 01 stays
    assert summary["ace"]["02_weighted_average"] == "0"
    assert book[("ace", "02_weighted_average", "normalize_rows")]["status"] == "not attempted"
    assert book[("blank", "02_weighted_average", "normalize_rows")]["status"] == "not submitted"  # a column for all
    assert summary["carol"]["maximum"] == summary["ace"]["maximum"] == summary["blank"]["maximum"] == "4"
    assert "updated 2 students" in term["late"].stdout


def test_an_unknown_student_is_a_usage_error_that_changes_nothing(term):
    assert term["unknown"].returncode == 2 and "no student folder nobody" in term["unknown"].stderr
    assert term["unknown files"] == term["late files"]


def test_the_old_files_stay_until_the_new_ones_are_complete(tmp_path, monkeypatch):
    rows = [report.Row("ace", "01_averaging", "average", 1.0, 1.0, "passed")]
    report.write_outputs(rows, tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}

    def broken(rows):
        raise RuntimeError("the disk filled up while drawing")

    monkeypatch.setattr(report, "picture_bytes", broken)
    with pytest.raises(RuntimeError):
        report.write_outputs([*rows, report.Row("bob", "01_averaging", "average", 0.0, 1.0, "failed")], tmp_path)
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    assert after == before  # nothing replaced, nothing half-written, no temporary file left
    assert not (tmp_path / "feedback" / "bob").exists() or not any((tmp_path / "feedback" / "bob").iterdir())


def test_a_gradebook_of_the_older_grader_is_updated_too(tmp_path):
    """A folder graded before gradebook.json existed: its CSV is read back, and kept."""
    (tmp_path / "gradebook.csv").write_text(
        "student,lesson,exercise,points,max_points,status,message,integrity\n"
        "ace,01_averaging,average,1,1,passed,,\n"
        "ace,01_averaging,uniform_weights,0,1,failed,wrong,code reads files; patches builtins\n"
    )
    earlier = report.read_rows(tmp_path)
    assert earlier[1].integrity == ["code reads files", "patches builtins"] and earlier[0].points == 1.0
    new = [report.Row("bob", "01_averaging", e, 1.0, 1.0, "passed") for e in ("average", "uniform_weights")]
    rows = report.complete(report.combine(earlier, new), grading.lesson_exercises)
    assert [(r.student, r.exercise, r.points) for r in rows] == [
        ("ace", "average", 1.0),
        ("ace", "uniform_weights", 0.0),
        ("bob", "average", 1.0),
        ("bob", "uniform_weights", 1.0),
    ]
