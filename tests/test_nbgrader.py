"""Instructors who already run nbgrader can use solutions/ as its source notebooks."""

import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from utils import course

pytest.importorskip("nbgrader")


def test_nbgrader_generates_an_assignment_from_a_lesson_as_it_is(tmp_path):
    lesson = "01_averaging"
    source = tmp_path / "source" / lesson
    source.mkdir(parents=True)
    shutil.copy(course.SOLUTIONS / f"{lesson}.ipynb", source)
    command = [
        sys.executable,
        "-m",
        "nbgrader",
        "generate_assignment",
        lesson,
        "--force",
        f"--CourseDirectory.root={tmp_path}",
    ]
    environment = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    finished = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    released = nbformat.read(tmp_path / "release" / lesson / f"{lesson}.ipynb", as_version=4)
    text = nbformat.writes(released)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    points = [
        cell.metadata["nbgrader"]["points"] for cell in released.cells if cell.metadata.get("nbgrader", {}).get("grade")
    ]
    assert points == [1, 1]
    assert sum("raise NotImplementedError" in cell.source for cell in released.cells) == 2
