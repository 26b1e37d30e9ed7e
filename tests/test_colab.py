"""The Colab side of every lesson, without a network: the first cell's Colab branch clones
the course (from a local stand-in for GitHub) and puts `utils` on the path, installs
nothing, and pictures never depend on a relative path Colab cannot resolve."""

import os
import re
import subprocess
import sys
import textwrap

import nbformat
import pytest

from utils import course

PRESENT = [lesson for lesson in course.LESSONS if (course.SOLUTIONS / lesson.filename).exists()]


def _setup_cell(lesson) -> str:
    notebook = nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4)
    return next(cell.source for cell in notebook.cells if cell.cell_type == "code")


@pytest.fixture(scope="module")
def fake_github(tmp_path_factory):
    """A bare clone of this repository where Colab would find it, and git told to look there."""
    root = tmp_path_factory.mktemp("github")
    origin = root / course.REPOSITORY
    origin.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "--quiet", "--bare", str(course.ROOT), str(origin)], check=True)
    fake_colab = root / "fake_colab"
    (fake_colab / "google" / "colab").mkdir(parents=True)
    (fake_colab / "google" / "__init__.py").write_text("")
    (fake_colab / "google" / "colab" / "__init__.py").write_text("")
    environment = {
        **os.environ,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.file://{root}/.insteadOf",
        "GIT_CONFIG_VALUE_0": "https://github.com/",
        "PIP_NO_INDEX": "1",  # any pip install would fail: the set-up must not install
        "MPLBACKEND": "Agg",
    }
    return fake_colab, environment


def _run_as_colab(source: str, workdir, fake_colab, environment) -> subprocess.CompletedProcess:
    """Run a first cell as Colab would: `google.colab` imported, cwd a bare /content."""
    program = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(fake_colab)!r})
        import google.colab  # noqa: F401  (Colab imports it before any cell runs)
        sys.path = [p for p in sys.path if p not in ({str(course.ROOT)!r}, '')]
        """
    )
    program += source + "\nimport utils, os\nprint('UTILS', os.path.dirname(utils.__file__))\n"
    return subprocess.run(
        [sys.executable, "-c", program], cwd=workdir, env=environment, capture_output=True, text=True, timeout=300
    )


def test_the_colab_branch_clones_the_course_and_finds_utils(fake_github, tmp_path):
    fake_colab, environment = fake_github
    source = _setup_cell(PRESENT[0])
    finished = _run_as_colab(source, tmp_path, fake_colab, environment)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "course" / ".git" / "shallow").exists(), "a shallow clone"
    assert f"UTILS {tmp_path / 'course' / 'utils'}" in finished.stdout
    again = _run_as_colab(source, tmp_path, fake_colab, environment)  # a second run does not clone again
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("lesson", PRESENT, ids=lambda lesson: lesson.stem)
def test_every_first_cell_has_the_same_colab_branch_and_installs_nothing(lesson):
    source = _setup_cell(lesson)
    reference = _setup_cell(PRESENT[0])
    colab_part = reference.split("here = Path.cwd()")[0]
    assert source.startswith(colab_part), f"{lesson.stem}'s first cell differs from lesson 01's Colab set-up"
    assert f'COURSE_REPOSITORY = "{course.REPOSITORY}"' in source
    assert not re.search(r"pip install|%pip|!pip", source), "the set-up must not upgrade Colab's packages"


def test_outside_colab_the_first_cell_clones_nothing(tmp_path):
    source = _setup_cell(PRESENT[0])
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    program = f"import os\nos.chdir({str(course.NOTEBOOKS)!r})\n" + source
    finished = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr
    assert not (course.NOTEBOOKS / "course").exists() and not (tmp_path / "course").exists()


@pytest.mark.parametrize("lesson", PRESENT, ids=lambda lesson: lesson.stem)
def test_no_markdown_picture_depends_on_a_relative_path(lesson):
    notebook = nbformat.read(course.SOLUTIONS / lesson.filename, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", cell.source) + re.findall(
            r'<img[^>]+src="([^"]+)"', cell.source
        ):
            assert re.match(r"(https?:|attachment:|data:)", target), (
                f"{lesson.stem}: picture {target} will not show on Colab"
            )
