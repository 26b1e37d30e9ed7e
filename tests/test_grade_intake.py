"""What the grader takes from a submissions folder: only regular files, read without following a link or
waiting on a pipe, no larger than its limit; files saved under other names matched to their lesson;
every refusal and every match said, in the gradebook, the feedback and on the screen. And no cell of
a CSV that a spreadsheet would run as a formula."""

import csv
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from utils import course
from utils.instructor.grade import intake, report, sandbox

LESSON = "01_averaging.ipynb"
FORMULA = '=HYPERLINK("http://evil.example","click")'
STUDENT = '=HYPERLINK("evil.example","click")'  # a folder's name: no slash
EVIL = f"Evil = type({FORMULA!r}, (Exception,), {{}})\n\ndef average(X):\n    raise Evil('-2+3')\n"


def _solution() -> nbformat.NotebookNode:
    return nbformat.read(course.SOLUTIONS / LESSON, as_version=4)


def _solution_lines() -> list[str]:
    """Every line of the lesson's solution regions and hidden tests long enough to be telling."""
    lines = []
    for cell in _solution().cells:
        for begin, end in (
            ("### BEGIN SOLUTION", "### END SOLUTION"),
            ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
        ):
            for part in cell.source.split(begin)[1:]:
                lines += [line.strip() for line in part.split(end)[0].splitlines() if len(line.strip()) > 10]
    assert lines
    return lines


def _class(root):
    """One student per way of handing in (or failing to)."""
    for student in ("linked", "fifo", "huge", "renamed", "downloads", "suffixed", "unmatched", "broken", "setup"):
        (root / student).mkdir(parents=True)
    (root / "linked" / LESSON).symlink_to(course.SOLUTIONS / LESSON)
    (root / "linked_folder").symlink_to(course.SOLUTIONS, target_is_directory=True)
    os.mkfifo(root / "fifo" / LESSON)
    huge = _solution()
    huge.cells[0].source += "\n# " + "x" * (intake.MAX_BYTES + 10**6)
    nbformat.write(huge, root / "huge" / LESSON)
    shutil.copy(course.SOLUTIONS / LESSON, root / "renamed" / "lesson1.ipynb")
    shutil.copy(course.NOTEBOOKS / LESSON, root / "downloads" / "01_averaging (1).ipynb")
    shutil.copy(course.SOLUTIONS / LESSON, root / "downloads" / "01_averaging-2.ipynb")
    os.utime(root / "downloads" / "01_averaging (1).ipynb", (1_000_000_000, 1_000_000_000))  # the older one
    shutil.copy(course.SOLUTIONS / LESSON, root / "suffixed" / "01_averaging.ipynb.json")
    nbformat.write(nbformat.v4.new_notebook(), root / "unmatched" / "homework.ipynb")
    (root / "broken" / "lesson1.ipynb").write_text('{"cells": [ cut short')
    crashed = _solution()
    setup = next(cell for cell in crashed.cells if cell.cell_type == "code")
    setup.outputs = [nbformat.v4.new_output("error", ename="ModuleNotFoundError", evalue="No module named 'utils'")]
    nbformat.write(crashed, root / "setup" / LESSON)
    (root / STUDENT).mkdir()
    injected = _solution()
    for cell in injected.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "average":
            cell.source = EVIL
    nbformat.write(injected, root / STUDENT / LESSON)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("intake")
    _class(root / "submissions")
    command = [sys.executable, "-m", "utils.grade", str(root / "submissions"), "--out", str(root / "out")]
    command += ["--cell-timeout", "30", "--notebook-timeout", "120", sandbox.RISK_FLAG]  # the sandbox is not the point
    finished = subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    with open(root / "out" / "gradebook.csv", newline="") as file:
        rows = {(row["student"], row["exercise"]): row for row in csv.DictReader(file)}
    return finished.stdout, rows, root / "out"


def _feedback(out, student) -> str:
    return (out / "feedback" / student / "01_averaging.md").read_text()


def test_a_link_to_the_solution_scores_0_is_flagged_and_its_target_is_never_read(graded):
    said, rows, out = graded
    for student in ("linked", "linked_folder"):
        mine = [rows[(student, exercise)] for exercise in ("average", "uniform_weights")]
        assert [(r["points"], r["status"]) for r in mine] == [("0", "refused")] * 2, mine
        assert "symbolic link" in mine[0]["message"] and "symbolic link" in mine[0]["integrity"], mine[0]
        assert not (out / "executed" / student).exists() and not (out / "instructor" / student).exists()
    assert "linked/01_averaging.ipynb: refused" in said and "linked_folder: refused" in said
    about_them = [
        path.read_text() for path in out.rglob("*") if path.is_file() and {"linked", "linked_folder"} & set(path.parts)
    ]
    about_them += [
        json.dumps(row)
        for row in json.loads((out / "gradebook.json").read_text())["rows"]
        if row["student"].startswith("linked")
    ]
    leaked = [line for line in _solution_lines() if any(line in text for text in about_them)]
    assert about_them and not leaked, leaked


def test_a_named_pipe_does_not_hang_the_grader_and_its_row_says_why(graded):
    _, rows, _ = graded
    row = rows[("fifo", "average")]
    assert (row["points"], row["status"]) == ("0", "refused") and "named pipe" in row["message"], row
    assert "named pipe" in row["integrity"]


def test_a_file_over_the_limit_is_refused_before_it_is_read(graded):
    _, rows, out = graded
    row = rows[("huge", "average")]
    assert (row["points"], row["status"]) == ("0", "refused"), row
    assert f"more than the grader reads ({intake.MAX_MB} MB)" in row["message"] and "Clear Outputs" in row["message"]
    assert f"over {intake.MAX_MB} MB" in row["integrity"]
    assert "more than the grader reads" in _feedback(out, "huge")


def test_uploads_saved_under_other_names_are_graded_as_their_lesson(graded):
    said, rows, out = graded
    for student, name in (("renamed", "lesson1.ipynb"), ("downloads", "01_averaging-2.ipynb")):
        row = rows[(student, "average")]
        assert (row["points"], row["status"], row["file"]) == ("1", "passed", name), row
        assert f"Graded from your file `{name}`" in _feedback(out, student)
    row = rows[("suffixed", "uniform_weights")]
    assert (row["points"], row["file"]) == ("1", "01_averaging.ipynb.json"), row
    assert "renamed/lesson1.ipynb: graded as 01_averaging" in said


def test_of_two_copies_the_newest_is_graded_and_the_other_named(graded):
    said, rows, out = graded
    assert "`01_averaging (1).ipynb` is an older copy" in rows[("downloads", "average")]["notes"]
    assert "`01_averaging (1).ipynb` is an older copy" in _feedback(out, "downloads")
    assert "downloads/01_averaging (1).ipynb: not graded" in said


def test_a_notebook_that_matches_no_lesson_is_named_not_silently_missing(graded):
    said, rows, out = graded
    row = rows[("unmatched", "average")]
    assert row["status"] == "not submitted" and "`homework.ipynb` matched no lesson" in row["notes"], row
    assert "`homework.ipynb` matched no lesson" in _feedback(out, "unmatched")
    assert "unmatched/homework.ipynb: could not tell which lesson it is" in said
    row = rows[("broken", "average")]  # named for the lesson, but not a notebook: unreadable, not missing
    assert (row["status"], row["file"]) == ("unreadable", "lesson1.ipynb"), row


def test_a_set_up_cell_that_crashed_at_home_is_told_though_it_costs_nothing(graded):
    _, rows, out = graded
    assert rows[("setup", "average")]["points"] == "1" and rows[("setup", "uniform_weights")]["points"] == "1"
    text = _feedback(out, "setup")
    assert "set-up cell (its first code cell) stopped with ModuleNotFoundError: No module named 'utils'" in text
    assert "cost no points" in text and "the one that holds `utils/`" in text


def test_no_csv_cell_begins_like_a_formula(graded):
    _, rows, out = graded
    assert rows[("'" + STUDENT, "average")]["points"] == "0"  # the student is there, escaped
    for name in ("gradebook.csv", "summary.csv"):
        with open(out / name, newline="") as file:
            cells = [cell for row in csv.reader(file) for cell in row]
        assert "'" + STUDENT in cells
        assert not [cell for cell in cells if cell.startswith(report.FORMULA_STARTS)], name


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=1+1", "'=1+1"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ('=cmd|" /C calc"!A0', '\'=cmd|" /C calc"!A0'),
        ("average", "average"),
        ("-1", "-1"),
        ("-2.5e3", "-2.5e3"),
        (-1.0, "-1"),
        (0.5, "0.5"),
        (2, "2"),
        ("100.0", "100.0"),
    ],
)
def test_csv_cells_are_escaped_and_numbers_stay_numbers(value, cell):
    assert report.csv_cell(value) == cell


@pytest.mark.parametrize(
    "name, stem",
    [
        ("05_dot_product_attention (1).ipynb", "05_dot_product_attention"),
        ("05_dot_product_attention-2.ipynb", "05_dot_product_attention"),
        ("05_dot_product_attention.ipynb.json", "05_dot_product_attention"),
        ("lesson5.ipynb", "05_dot_product_attention"),
        ("Lesson 5 (2).ipynb", "05_dot_product_attention"),
        ("lesson_05-2.ipynb", "05_dot_product_attention"),
        ("Dot Product Attention copy.ipynb", "05_dot_product_attention"),
        ("01_averaging copy 2.ipynb", "01_averaging"),
        ("homework.ipynb", None),
        ("week3_lesson5.ipynb", None),  # two lesson numbers: the name does not say
    ],
)
def test_a_file_name_says_its_lesson_when_it_says_only_one(name, stem):
    lesson = intake.lesson_by_name(name, list(course.LESSONS))
    assert (lesson.stem if lesson else None) == stem


def test_a_notebook_says_its_lesson_by_its_exercises():
    for lesson in course.LESSONS[:5]:
        notebook = nbformat.read(course.NOTEBOOKS / lesson.filename, as_version=4)
        assert intake.lesson_by_content(notebook, list(course.LESSONS)) == lesson
    assert intake.lesson_by_content(nbformat.v4.new_notebook(), list(course.LESSONS)) is None


def test_the_reader_refuses_what_is_not_a_regular_file_even_when_asked_directly(tmp_path):
    (tmp_path / "link.ipynb").symlink_to(course.SOLUTIONS / LESSON)
    os.mkfifo(tmp_path / "pipe.ipynb")
    (tmp_path / "folder.ipynb").mkdir()
    for name, words in (("link.ipynb", "symbolic link"), ("pipe.ipynb", "named pipe"), ("folder.ipynb", "a folder")):
        with pytest.raises(intake.Refused, match=words):
            intake.read_bytes(tmp_path, name)
    (tmp_path / "real").mkdir()
    shutil.copy(course.SOLUTIONS / LESSON, tmp_path / "real" / LESSON)
    (tmp_path / "folder_link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(intake.Refused, match="folder is a symbolic link"):
        intake.read_bytes(tmp_path / "folder_link", LESSON)
    assert intake.read_bytes(tmp_path / "real", LESSON) == (course.SOLUTIONS / LESSON).read_bytes()
