"""Every lesson keeps the course's conventions, and in every learner copy each stub makes
its check fire before the learner has written anything."""

import pytest

from tests.notebook_code import PRELUDE, graded_cells, read, run_check, run_source
from utils import checks, course
from utils.checks._harness import CheckError

PRESENT = [lesson for lesson in course.LESSONS if (course.SOLUTIONS / lesson.filename).exists()]
SETUP_LINES = (
    'COURSE_REPOSITORY = "',
    'if "google.colab" in sys.modules',
    "device = start(seed=0)",
)


def test_the_first_two_lessons_exist():
    assert [lesson.stem for lesson in PRESENT][:2] == ["01_averaging", "02_weighted_average"]


@pytest.mark.parametrize("lesson", PRESENT, ids=lambda lesson: lesson.stem)
def test_lesson_follows_the_conventions(lesson):
    notebook = read(course.SOLUTIONS / lesson.filename)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {lesson.number:02d} · ")
    assert "**The question.**" in first.source
    setup = next(cell for cell in notebook.cells if cell.cell_type == "code")
    for line in SETUP_LINES:
        assert line in setup.source, f"the first code cell lacks `{line}`"
    last = notebook.cells[-1]
    assert last.cell_type == "markdown" and "## Summary" in last.source
    if lesson.number < len(course.LESSONS):
        assert "**Next.**" in last.source


@pytest.mark.parametrize("lesson", PRESENT, ids=lambda lesson: lesson.stem)
def test_every_exercise_has_its_check_with_points(lesson):
    notebook = read(course.SOLUTIONS / lesson.filename)
    exercises = graded_cells(notebook, solution=True)
    graded = graded_cells(notebook, solution=False)
    assert tuple(exercises) == course.EXERCISES[lesson.stem]
    for name, cell in exercises.items():
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        check = course.check_name(name)
        assert hasattr(checks, check), f"utils.checks has no {check}"
        cell = graded[f"check_{name}"]
        assert f"checks.{check}(" in cell.source
        assert cell.metadata["nbgrader"]["points"] > 0 and cell.metadata["nbgrader"]["schema_version"] == 3


@pytest.mark.parametrize("lesson", PRESENT, ids=lambda lesson: lesson.stem)
def test_each_stub_makes_its_check_fail(lesson):
    """Run the learner's copy as it is handed out: every check must fire, saying the exercise is not written."""
    path = course.NOTEBOOKS / lesson.filename
    notebook = read(path)
    namespace: dict = {}
    exec(PRELUDE, namespace)
    for name, cell in graded_cells(notebook, solution=True).items():
        assert 'raise NotImplementedError("your code here")' in cell.source
        run_source(cell.source, f"{path}:{name}", namespace)
        with pytest.raises(CheckError, match="not written yet"):
            run_check(path, f"check_{name}", namespace)
