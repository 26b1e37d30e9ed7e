"""The builder: learner copies hold stubs, never solutions; a broken marker stops the
build before anything is written; `--check` finds stale copies."""

import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils import course
from utils.instructor import build

SOURCE = """def f(x):
    \"\"\"Double x.\"\"\"
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION
"""


def test_a_solution_region_becomes_an_indented_stub():
    stubbed = build.strip_solutions(SOURCE, "here")
    assert (
        stubbed
        == 'def f(x):\n    """Double x."""\n    # YOUR CODE HERE\n    raise NotImplementedError("your code here")\n'
    )


def test_hidden_tests_disappear():
    source = "check(f)\n### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS\nprint('done')"
    assert build.strip_solutions(source, "here") == "check(f)\nprint('done')"


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "line 1: `### BEGIN SOLUTION` is never closed"),
        ("x = 1\n### END SOLUTION", "line 2: `### END SOLUTION` with no `### BEGIN SOLUTION` before it"),
        (
            "### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n",
            "line 2: `### BEGIN HIDDEN TESTS` inside the `### BEGIN SOLUTION` opened at line 1",
        ),
        ("### BEGIN HIDDEN TESTS\nx\n### END SOLUTION", "line 3: `### END SOLUTION` with no `### BEGIN SOLUTION`"),
    ],
)
def test_unbalanced_markers_are_named(source, message):
    with pytest.raises(build.BuildError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build.strip_solutions(source, "solutions/x.ipynb, cell 3")


@pytest.fixture
def course_copy(tmp_path, monkeypatch):
    """A throwaway copy of solutions/, notebooks/ and README.md to build in."""
    for name in ("solutions", "notebooks"):
        shutil.copytree(course.ROOT / name, tmp_path / name)
    shutil.copy(course.ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.setattr(course, "ROOT", tmp_path)
    monkeypatch.setattr(course, "SOLUTIONS", tmp_path / "solutions")
    monkeypatch.setattr(course, "NOTEBOOKS", tmp_path / "notebooks")
    return tmp_path


def test_a_broken_notebook_stops_the_build_and_nothing_is_written(course_copy, capsys):
    before = {path: path.read_bytes() for path in (course_copy / "notebooks").glob("*.ipynb")}
    (course_copy / "notebooks" / "01_averaging.ipynb").unlink()  # a build would write this one...
    broken = new_notebook(
        cells=[new_markdown_cell("# 02"), new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1")]
    )
    nbformat.write(broken, course_copy / "solutions" / "02_weighted_average.ipynb")  # ...but this one is broken
    assert build.main([]) == 2
    error = capsys.readouterr().err
    assert "solutions/02_weighted_average.ipynb, cell 1, line 2: `### BEGIN SOLUTION` is never closed" in error
    assert not (course_copy / "notebooks" / "01_averaging.ipynb").exists()
    for path, content in before.items():
        if path.exists():
            assert path.read_bytes() == content
    assert not list((course_copy / "notebooks").glob(".*"))  # no temporary files left behind


def test_check_names_stale_copies_and_a_build_fixes_them(course_copy, capsys):
    assert build.main(["--check"]) == 0
    learner = course_copy / "notebooks" / "01_averaging.ipynb"
    learner.write_text(learner.read_text().replace("Averaging", "Averaging!"))
    (course_copy / "notebooks" / "99_extra.ipynb").write_text("{}")
    assert build.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "notebooks/01_averaging.ipynb" in out and "notebooks/99_extra.ipynb (no solution)" in out
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    assert not (course_copy / "notebooks" / "99_extra.ipynb").exists()


def test_repo_sets_the_repository_everywhere(course_copy, monkeypatch, tmp_path):
    config = tmp_path / "course.py"
    shutil.copy(course.__file__, config)
    monkeypatch.setattr(course, "__file__", str(config))
    assert build.main(["--repo", "someone/their-fork"]) == 0
    assert 'REPOSITORY = "someone/their-fork"' in config.read_text()
    readme = (course_copy / "README.md").read_text()
    assert "github/someone/their-fork/blob/main/notebooks/01_averaging.ipynb" in readme
    for folder in ("solutions", "notebooks"):
        text = (course_copy / folder / "02_weighted_average.ipynb").read_text()
        assert 'COURSE_REPOSITORY = \\"someone/their-fork\\"' in text
    assert build.main(["--repo", "not a repo"]) == 2


def test_notebooks_are_in_sync_with_solutions():
    """A fresh build would leave notebooks/ and README.md byte-identical."""
    assert build.stale(build.plan()) == [], "run `python -m utils.build`"


def test_learner_copies_hold_no_solution_no_hidden_test_and_no_output():
    for lesson in course.LESSONS:
        source = course.SOLUTIONS / lesson.filename
        if not source.exists():
            continue
        learner_text = (course.NOTEBOOKS / lesson.filename).read_text()
        for marker in build.MARKERS:
            assert marker not in learner_text
        learner = nbformat.read(course.NOTEBOOKS / lesson.filename, as_version=4)
        assert all(
            not cell.get("outputs") and cell.get("execution_count") is None
            for cell in learner.cells
            if cell.cell_type == "code"
        )
        assert "widgets" not in learner.metadata, "saved widget state would show the solution's drawings"
        cells = nbformat.read(source, as_version=4).cells
        public = "\n".join(build.strip_solutions(cell.source, "") for cell in cells if cell.cell_type == "code")
        public += "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
        for cell in cells:
            for region in cell.source.split("### BEGIN SOLUTION")[1:]:
                for line in region.split("### END SOLUTION")[0].strip().splitlines():
                    line = line.strip()
                    if len(line) > 12 and not line.startswith("#") and line not in public:
                        assert line not in learner_text, f"{lesson.filename} leaks: {line}"


# Lines that a lesson's own solution holds and that its learner copy may show all the same.
SHOWN_ON_PURPOSE = {
    # the softmax every attention of the course ends with (lesson 05's): it names no one exercise
    "*": {"weights = torch.softmax(scores, dim=-1)"},
    # lesson 03 works one offset by hand (cell "The window, one offset at a time") before exercise 3 does them
    # all at once, and its slow loop reads the image's shape as the exercise does
    "03_non_local_means": {"height, width = img.shape", "differences2 = (moved - padded) ** 2"},
    # lesson 14's forward pass (shown) scales as the backward does; its D kernel and the forward kernel (shown)
    # index their rows as the exercise's kernels do, and a wrapper makes D's buffer as the exercise's does
    "14_training_through_the_kernel": {
        "scale = 1 / math.sqrt(Q.shape[-1])",
        "rows = block * BLOCK + tl.arange(0, BLOCK)",
        "delta = torch.empty_like(lse)",
    },
}


def own_giveaways(solution: nbformat.NotebookNode, learner: nbformat.NotebookNode, stem: str) -> list[str]:
    """The lines of a lesson's own solution regions that its learner copy shows anyway, in a later cell that writes
    the exercise out or in a markdown cell that quotes it: every line of 25 characters or more (as code: a
    trailing comment stripped), not a comment, not a `def` or `class` line, found anywhere in a cell's source."""
    allowed = SHOWN_ON_PURPOSE["*"] | SHOWN_ON_PURPOSE.get(stem, set())
    found = []
    for index, cell in enumerate(solution.cells):
        if cell.cell_type != "code":
            continue
        for region in cell.source.split(build.BEGIN_SOLUTION)[1:]:
            for line in build._code_lines(region.split(build.END_SOLUTION)[0]):
                if len(line) < 25 or line.startswith(("#", "def ", "class ")) or line in allowed:
                    continue
                shown = [number for number, other in enumerate(learner.cells) if line in other.source]
                found += [f"{stem}: cell {number} shows `{line}` (the solution of cell {index})" for number in shown]
    return found


def test_no_learner_copy_shows_its_own_lessons_answers():
    """A lesson that writes out its own exercise elsewhere (a demo that restates the function, a recap, a markdown
    cell quoting the solution) gives the answer away; later cells call the learner's function instead."""
    found = []
    for lesson in course.LESSONS:
        if (course.SOLUTIONS / lesson.filename).exists():
            solution = nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4)
            learner = nbformat.read(course.NOTEBOOKS / lesson.filename, as_version=4)
            found += own_giveaways(solution, learner, lesson.stem)
    assert not found, "\n".join(found)


def test_the_own_giveaway_rule_finds_a_restated_solution():
    """Not vacuous: a demo cell after the exercise that restates one of its lines is named, and so is a markdown
    cell that quotes one; a short line, a comment and the shared softmax are not."""
    exercise = new_code_cell(
        "def attend(Q, K, V):\n"
        "    ### BEGIN SOLUTION\n"
        "    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (n, m)\n"
        "    weights = torch.softmax(scores, dim=-1)\n"
        "    # the weighted average of the values, below\n"
        "    return weights @ V\n"
        "    ### END SOLUTION\n"
    )
    demo = new_code_cell(
        "scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])\nweights = torch.softmax(scores, dim=-1)"
    )
    quote = new_markdown_cell(
        "Hint: `return weights @ V` and `scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])`."
    )
    solution = new_notebook(cells=[exercise, demo, quote])
    learner = build.learner_copy(solution, "lesson")
    found = own_giveaways(solution, learner, "99_lesson")
    assert len(found) == 2 and "cell 1 shows `scores = Q @ K" in found[0] and "cell 2 shows" in found[1]
