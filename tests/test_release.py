"""A class release (`python -m utils.build --release DIR --repo OWNER/REPO`): the learners' part
of the course, every Colab link pointing at the release, no line of a solution or of a hidden
test anywhere in it, and lesson 01 runs from it."""

import ast
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from utils import course
from utils.instructor import build

REPOSITORY = "someone/attention-class"
PRESENT = [lesson for lesson in course.LESSONS if (course.SOLUTIONS / lesson.filename).exists()]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class") / "attention-class"
    written = build.write_release(folder, REPOSITORY)
    assert written
    return folder


def _files(folder):
    return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*")) if path.is_file()}


def _text(path) -> str:
    """What a reader of the file sees: a notebook's cell sources, any other file's text."""
    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=4)
        return "\n".join(cell.source for cell in notebook.cells) + "\n" + path.read_text()
    return path.read_text()


def test_a_release_holds_the_learners_part_and_nothing_else(release):
    files = _files(release)
    tops = {name.split("/")[0] for name in files}
    assert tops <= {"notebooks", "utils", "figures", "requirements.txt", "NOTATION.md", "README.md", ".gitignore",
                    build.RELEASE_MARK, "LICENSE"}  # fmt: skip
    assert {f"notebooks/{lesson.filename}" for lesson in PRESENT} == {n for n in files if n.startswith("notebooks/")}
    assert {f"figures/{p.name}" for p in course.FIGURES.glob("*.png")} <= set(files)
    for name in ("utils/instructor", "utils/build.py", "utils/grade.py", "utils/benchmark.py", "utils/figures.py"):
        assert not any(n == name or n.startswith(name + "/") for n in files), f"{name} is the instructor's"
    assert "utils/checks/__init__.py" in files and "utils/poems.txt" in files
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in files)


def test_every_relative_link_of_a_released_lesson_leads_to_a_released_file(release):
    files = _files(release)
    for lesson in PRESENT:
        notebook = nbformat.read(release / "notebooks" / lesson.filename, as_version=4)
        for cell in notebook.cells:
            for target in re.findall(r"\]\((\.\./[^)#\s]+)", cell.source if cell.cell_type == "markdown" else ""):
                resolved = posixpath.normpath(posixpath.join("notebooks", target))
                assert resolved in files, f"{lesson.filename} links to {target}, which the release does not hold"


def _solution_lines() -> dict[str, str]:
    """Every line inside a solution region or a hidden test of solutions/ (as code: indentation and a
    trailing comment stripped), with where it comes from."""
    lines = {}
    for lesson in PRESENT:
        notebook = nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            region = None
            for line, code in zip(cell.source.splitlines(), build._code_lines(cell.source)):
                if line.strip() in (build.BEGIN_SOLUTION, build.BEGIN_HIDDEN):
                    region = line.strip()
                elif line.strip() in (build.END_SOLUTION, build.END_HIDDEN):
                    region = None
                elif region:
                    lines.setdefault(code, f"{lesson.filename}, cell {index}")
    return lines


def _public_lines() -> set[str]:
    """Every line (as code) that a learner is meant to see: the lessons' markdown and their code outside the
    marked regions, and, when shorter than 30 characters, a line of the helpers shipped in utils/."""
    public = set()
    for lesson in PRESENT:
        for cell in nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4).cells:
            source = cell.source if cell.cell_type != "code" else build.strip_solutions(cell.source, "")
            public |= set(build._code_lines(source))
        public |= build._shown_helper_lines(lesson)  # `utils/model.py`, which lessons 12 on print as their code
    for path in (course.ROOT / "utils").rglob("*.py"):
        public |= {line for line in build._code_lines(path.read_text()) if len(line) < 30}
    return public


def _telling_lines() -> dict[str, str]:
    """The solution and hidden-test lines that must not be released (the rule is in the test below)."""
    public = _public_lines()
    return {line: where for line, where in _solution_lines().items() if len(line) >= 8 and line not in public}


def _leaks(files: dict, telling: dict[str, str]) -> list[str]:
    leaks = []
    for name, path in files.items():
        if path.suffix in (".png", ".jpg"):
            continue
        text = _text(path)
        released_lines = set(build._code_lines(text))
        for line, where in telling.items():
            if line in released_lines or (len(line) >= 30 and (line in text or json.dumps(line)[1:-1] in text)):
                leaks.append(f"{name} holds `{line}` ({where})")
    return leaks


def test_no_line_of_a_solution_or_of_a_hidden_test_is_released(release):
    """The rule. Take every line inside every `### BEGIN SOLUTION` / `### END SOLUTION` region and
    every line between `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` in solutions/, as code
    (indentation and a trailing `# comment` stripped). A line tells nothing, and may appear, if it
    is shorter than 8 characters (`)`, `else:`, `pass`), or if the learner is meant to see it anyway:
    a line of a lesson's markdown or of its code outside the marked regions (a `return out` that a
    demo also holds; lesson 10's own `masked_attention`, which is lesson 08's exercise; the tiny GPT of
    `utils/model.py`, which lessons 12 on print as their code: since `build.giveaways` names such lessons
    and `--upto` holds them back, and `utils/model.py` with them), or a line under 30 characters that a shipped helper also holds
    (`n, d = x.shape[-2:]`). Every other line must not be a line of any released file; one of 30
    characters or more must not appear even inside a longer line. Notebooks are read as their cell
    sources and as raw JSON."""
    telling = _telling_lines()
    assert len(telling) > 0.8 * len(_solution_lines()), "the rule must leave most solution lines to look for"
    leaks = _leaks(_files(release), telling)
    assert not leaks, "\n".join(leaks)


def test_the_rule_finds_a_line_that_leaked(tmp_path):
    """The leak test is not vacuous: a solution line slipped into a helper, or into a notebook, is found."""
    telling = _telling_lines()
    short = next(line for line in telling if len(line) < 30)
    long = next(line for line in telling if len(line) >= 30)
    helper = tmp_path / "helper.py"
    helper.write_text(f"def f(X):\n    {short}  # a comment\n")
    lesson = tmp_path / "lesson.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"y = 1; {long}")]), lesson)
    leaks = _leaks({"utils/helper.py": helper, "notebooks/lesson.ipynb": lesson}, telling)
    assert len(leaks) == 2 and short in leaks[0] and long in leaks[1]


def test_a_release_up_to_a_lesson_leaves_the_later_ones_out(tmp_path, capsys):
    """`--upto 8` hands out lessons 01-08 (lessons 12 and 13 stay back, and so does `utils/model.py`, the tiny GPT
    they print, built from lesson 07's heads, 08's mask and 09's positions), and the build says which lessons give
    earlier exercises away when they go out together."""
    assert build.main(["--release", str(tmp_path / "class"), "--upto", "8"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "class" / "notebooks").iterdir())
    assert names == [lesson.filename for lesson in PRESENT if lesson.number <= 8]
    assert out.count("note:") == len(build.giveaways([lesson for lesson in PRESENT if lesson.number <= 8]))
    readme = (tmp_path / "class" / "README.md").read_text()
    assert "13_attention_on_gpu" not in readme
    assert not (tmp_path / "class" / "utils" / "model.py").exists()
    assert build.main(["--release", str(tmp_path / "class")]) == 0  # the next week: every lesson
    out = capsys.readouterr().out
    assert all(f"note: {note};" in out for note in build.giveaways(PRESENT))
    assert (tmp_path / "class" / "notebooks" / "13_attention_on_gpu.ipynb").exists()
    assert (tmp_path / "class" / "utils" / "model.py").exists()


def test_every_badge_and_set_up_points_at_the_release(release):
    readme = (release / "README.md").read_text()
    for lesson in PRESENT:
        assert course.colab_url(lesson, REPOSITORY) in readme
        notebook = nbformat.read(release / "notebooks" / lesson.filename, as_version=4)
        setup = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
        assert f'COURSE_REPOSITORY = "{REPOSITORY}"' in setup, lesson.stem
    assert f'REPOSITORY = "{REPOSITORY}"' in (release / "utils" / "course.py").read_text()
    assert f"git clone https://github.com/{REPOSITORY}\ncd attention-class\n" in readme
    for name, path in _files(release).items():
        if path.suffix != ".png":
            assert course.REPOSITORY not in path.read_text(), f"{name} still points at {course.REPOSITORY}"


def test_the_learners_readme_says_nothing_of_solutions_or_instructor_tools(release):
    readme = (release / "README.md").read_text()
    assert not re.search(r"solution|hidden test|grad(e|ing)|nbgrader", readme, re.IGNORECASE)
    assert "python -m utils." not in readme
    assert "download.pytorch.org/whl/cpu" in readme and "python -m venv .venv" in readme


def _utils_imports(source: str) -> set[str]:
    """The `utils...` modules a piece of Python imports (`from utils import a` gives `utils.a`)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names if alias.name.split(".")[0] == "utils"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "utils":
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def test_the_lessons_need_only_what_is_released(release):
    """Every `utils` import of a lesson or a released helper names a released module (or a name in one),
    and every released helper imports with only the release on the path."""
    files = _files(release)
    sources = {name: path.read_text() for name, path in files.items() if name.endswith(".py")}
    for name, path in files.items():
        if name.endswith(".ipynb"):
            cells = nbformat.read(path, as_version=4).cells
            sources[name] = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
    for name, source in sources.items():
        for module in _utils_imports(source):
            parts = module.split(".")
            found = any(
                "/".join(parts[:k]) + suffix in files
                for k in range(len(parts), 0, -1)
                for suffix in (".py", "/__init__.py")
            )
            assert found and not {"instructor", "build", "grade", "benchmark", "figures"} & set(parts[1:2]), (
                f"{name} imports {module}, which the release does not have"
            )
    modules = sorted(
        name[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for name in files
        if name.startswith("utils/") and name.endswith(".py")
    )
    program = f"import sys; sys.path.insert(0, {str(release)!r})\n" + "".join(f"import {m}\n" for m in modules)
    program += "import utils; assert utils.__file__.startswith(sys.path[0]), utils.__file__\n"
    finished = subprocess.run(
        [sys.executable, "-I", "-c", program], cwd=release, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr


def test_a_release_rewrites_an_earlier_one_and_refuses_any_other_folder(tmp_path):
    folder = tmp_path / "class"
    (folder / ".git").mkdir(parents=True)  # a clone of the class repository, empty so far
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    build.write_release(folder, REPOSITORY)
    mark = folder / build.RELEASE_MARK
    mark.write_text(mark.read_text() + "notebooks/99_dropped.ipynb\n")  # a lesson an earlier release had
    (folder / "notebooks" / "99_dropped.ipynb").write_text("{}")
    build.write_release(folder, REPOSITORY)
    assert not (folder / "notebooks" / "99_dropped.ipynb").exists()
    assert (folder / ".git" / "HEAD").exists(), "the clone's history stays"

    (folder / "notes.txt").write_text("mine")
    with pytest.raises(build.BuildError, match="holds files a release did not write: notes.txt"):
        build.write_release(folder, REPOSITORY)

    other = tmp_path / "other"
    other.mkdir()
    (other / "solutions.ipynb").write_text("{}")
    with pytest.raises(build.BuildError, match="is not empty and is not an earlier release"):
        build.write_release(other, REPOSITORY)
    assert [p.name for p in other.iterdir()] == ["solutions.ipynb"]
    with pytest.raises(build.BuildError, match="inside the course repository"):
        build.write_release(course.ROOT / "release", REPOSITORY)
    with pytest.raises(build.BuildError, match="OWNER/REPO"):
        build.write_release(tmp_path / "third", "not a repository")


def test_the_command_line_writes_a_release_and_says_where(tmp_path, capsys):
    assert build.main(["--release", str(tmp_path / "out"), "--repo", REPOSITORY]) == 0
    out = capsys.readouterr().out
    assert f"to {tmp_path / 'out'}" in out and f"github.com/{REPOSITORY}" in out
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert build.main(["--release", str(tmp_path / "full")]) == 2
    assert "not an earlier release" in capsys.readouterr().err


def test_lesson_01_runs_from_the_release(release):
    """The learner's copy of lesson 01, run from the release as Jupyter would (its folder as the working
    folder): the set-up finds the release's `utils`, the cells before the first exercise run, the check
    of the stub says it still raises `NotImplementedError`, and the solution's code, put in its place, passes."""
    from nbclient import NotebookClient

    lesson = PRESENT[0]
    notebook = nbformat.read(release / "notebooks" / lesson.filename, as_version=4)
    solution = nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4)
    solutions = {
        c.metadata["nbgrader"]["grade_id"]: c for c in solution.cells if c.metadata.get("nbgrader", {}).get("solution")
    }
    cells = notebook.cells
    first = next(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("solution"))
    check = first + 1
    assert cells[check].metadata["nbgrader"].get("grade")
    filled = nbformat.from_dict(cells[first])
    filled.source = solutions[filled.metadata["nbgrader"]["grade_id"]].source
    filled.id = "filled"
    again = nbformat.from_dict(cells[check])
    again.id = "check-again"
    where = nbformat.v4.new_code_cell("import utils\nprint(utils.__file__)", id="where")
    setup = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    notebook.cells = [*cells[: setup + 1], where, *cells[setup + 1 : check + 1], filled, again]
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(release / "notebooks")}},
    ).execute()  # fmt: skip

    def errors(cell):
        return [o for o in cell.get("outputs", []) if o.output_type == "error"]

    ran = notebook.cells
    assert str(release / "utils" / "__init__.py") in "".join(o.get("text", "") for o in ran[setup + 1].outputs)
    for cell in ran[: first + 2]:  # the set-up, the path printed, every cell before the first exercise, the stub
        assert not errors(cell), (cell.source[:80], errors(cell))
    stub_errors = errors(ran[check + 1])  # the check says the stub is not written yet
    assert len(stub_errors) == 1 and "still raises NotImplementedError" in stub_errors[0].evalue, stub_errors
    assert not errors(ran[-2]) and not errors(ran[-1]), errors(ran[-1])
    assert "".join(o.get("text", "") for o in ran[-1].outputs).strip(), "the check says it passed"


def test_the_course_readme_tells_the_two_repositories_apart():
    """The self-study README says where the solutions are, how to start on a CPU-only machine, and how an
    instructor makes the class's repository."""
    readme = (course.ROOT / "README.md").read_text()
    assert "`solutions/`" in readme and "python -m venv .venv" in readme
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "python -m utils.build --release" in readme and "--upto" in readme


def test_on_colab_a_lesson_of_the_release_fetches_the_release(release, tmp_path):
    """The release's set-up cell, run as on Colab (`google.colab` imported, a bare working folder), clones
    github.com/someone/attention-class (here a local stand-in: git is told to look in a folder) and imports
    `utils` from that clone."""
    github = tmp_path / "github"
    origin = github / REPOSITORY
    origin.parent.mkdir(parents=True)
    git = ["git", "-c", "user.name=course", "-c", "user.email=course@example.org"]
    published = tmp_path / "published"
    shutil.copytree(release, published)
    for command in (["init", "--quiet", "-b", "main"], ["add", "-A"], ["commit", "--quiet", "-m", "release"]):
        subprocess.run([*git, *command], cwd=published, check=True)
    subprocess.run(["git", "clone", "--quiet", "--bare", str(published), str(origin)], check=True)
    fake_colab = tmp_path / "fake_colab"
    (fake_colab / "google" / "colab").mkdir(parents=True)
    (fake_colab / "google" / "__init__.py").write_text("")
    (fake_colab / "google" / "colab" / "__init__.py").write_text("")
    notebook = nbformat.read(release / "notebooks" / PRESENT[0].filename, as_version=4)
    setup = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    program = f"import sys\nsys.path.insert(0, {str(fake_colab)!r})\nimport google.colab\n"
    program += f"sys.path = [p for p in sys.path if p not in ({str(course.ROOT)!r}, '')]\n" + setup
    program += "\nimport utils\nprint('UTILS', utils.__file__)\n"
    content = tmp_path / "content"
    content.mkdir()
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"url.file://{github}/.insteadOf",
        GIT_CONFIG_VALUE_0="https://github.com/",
        PIP_NO_INDEX="1",
        MPLBACKEND="Agg",
    )
    finished = subprocess.run(
        [sys.executable, "-c", program], cwd=content, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr
    assert f"UTILS {content / 'course' / 'utils' / '__init__.py'}" in finished.stdout
    assert not (content / "course" / "solutions").exists()
