"""Students who try to get out of the sandbox, or past the verdict, from inside the code the grader runs.

Each attack below was once a real escape or a forged grade: a kernel that remounted the interpreter's
folders writable and planted a module the grader imported; a request file swapped for a link to a
solution; an input zeroed in place so that the hidden test compared zeros with zeros; hidden-test inputs
logged by one cell and printed by the next; a kernel that ignored its interrupt and kept the grader's
output open; output that bypassed the limit; a flag that fired on innocent work and missed the obvious
patch. Every attacker scores 0, the host is left as it was (canaries checked after the run), and the
honest student keeps every point with no flag.
"""

import csv
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import nbformat
import pytest

from utils import course
from utils.instructor import build
from utils.instructor.grade import sandbox

LESSON = "01_averaging.ipynb"
STUB_UNIFORM = "def uniform_weights(n):\n    raise NotImplementedError\n"
SITE = Path(sysconfig.get_paths()["purelib"])
CANARY_TEXT = "the instructor's file, as it was\n"

REMOUNT = """
import os, subprocess
targets = {targets!r}
for path in targets:  # as the sandbox's root this worked; as nobody it must not
    subprocess.run(["mount", "-o", "remount,bind,rw", path], capture_output=True)
    subprocess.run(["unshare", "-r", "-m", "sh", "-c",
                    f"mount -o remount,bind,rw {{path}}; echo 'import os' > {{path}}/planted_by_student.py"],
                   capture_output=True)
with open("/dev/shm/left_by_student", "w") as file:  # a channel to the next student, once
    file.write("hello")
with open({canary!r}, "w") as file:  # the instructor's file, overwritten
    file.write("overwritten")

def average(X):
    return X.mean(dim=0)
"""

LINKS = """
import os, glob
for folder in [".", "ipc", *glob.glob("/tmp/*")]:
    for name, target in (("request.pt", {canary!r}), ("answer.pt", {solution!r}), ("result.json", {site!r})):
        try:
            os.symlink(target, os.path.join(folder, name))
        except OSError:
            pass
for name in os.listdir("ipc") if os.path.isdir("ipc") else []:
    try:
        os.replace(os.path.join("ipc", name), os.path.join("ipc", name + ".moved"))
    except OSError:
        pass

def average(X):
    for target in ({canary!r}, {solution!r}, {site!r}):
        if os.path.exists(target):
            with open(target, "w") as file:
                file.write("overwritten through a link")
    return torch.zeros(X.shape[-1])
"""

ZEROES_IN_PLACE = """
def average(X):
    if X.dtype == torch.float64:  # the hidden test's input: zero it, and zeros are "its mean"
        X.zero_()
        return torch.zeros(X.shape[-1], dtype=X.dtype)
    return X.mean(dim=0)
"""

LOGS_HIDDEN_INPUTS = """
seen = []

def average(X):
    seen.append(f"{X.dtype} {tuple(X.shape)} {X.flatten()[:3].tolist()}")
    return X.mean(dim=0)
"""
PRINTS_HIDDEN_INPUTS = """
print("inputs the checks used:", seen)

def uniform_weights(n):
    return torch.ones(n, n) / n
"""

STAYS_ALIVE = """
import signal, subprocess
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(["sh", "-c", "trap '' INT TERM HUP; while :; do :; done"])
subprocess.Popen(["sh", "-c", "trap '' INT TERM HUP; sleep 100000"], start_new_session=True)
while True:
    try:
        pass
    except BaseException:
        pass

def average(X):
    return X.mean(dim=0)
"""

FLOODS = """
def average(X):
    return X.mean(dim=0)

from IPython.display import display
handle = display("start", display_id=True)
for _ in range(3000):
    handle.update("x" * 2000)  # updates of a display: once past the limit
raise ValueError("y" * 3_000_000)  # and an error message of 3 MB
"""

PATCHES_THE_CHECKS = """
import utils.checks as c
c.__dict__.update({"check_average": lambda f: print("✔ average passes"), "check_uniform_weights": print})

def average(X):
    return torch.zeros(X.shape[-1])
"""

BLANK_LINES = "\n" * 200_000 + "def average(X):\n    return X.mean(dim=0)\n"


def _notebook(average: str, uniform: str | None = None, setup: str | None = None) -> nbformat.NotebookNode:
    """The solution notebook with the exercise cells (and, if given, the set-up cell) replaced."""
    notebook = nbformat.read(course.SOLUTIONS / LESSON, as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "average":
            cell.source = average
        elif grade_id == "uniform_weights" and uniform is not None:
            cell.source = uniform
    if setup is not None:
        next(cell for cell in notebook.cells if cell.cell_type == "code").source = setup
    return notebook


def _student_processes() -> list[str]:
    """Processes left running as any of the sandbox's student users."""
    left = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid = int(next(line for line in status.read_text().splitlines() if line.startswith("Uid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if sandbox.STUDENT_UID <= uid < sandbox.STUDENT_UID + sandbox.UIDS:
            left.append(status.parent.name)
    return left


@pytest.fixture(scope="module")
def escape(tmp_path_factory):
    if sandbox.problem():
        pytest.skip(f"the grader's sandbox cannot be made on this machine: {sandbox.problem()}")
    root = tmp_path_factory.mktemp("escape")
    canary = SITE / "grader_canary_test.txt"
    canary.write_text(CANARY_TEXT)
    outside = root / "canary.txt"  # a file of the instructor's that no sandbox can see
    outside.write_text(CANARY_TEXT)
    targets = [str(SITE), str(Path(sys.executable).resolve().parent.parent), "/usr", "/etc"]
    released = build.learner_copy(
        nbformat.read(course.SOLUTIONS / LESSON, as_version=4), LESSON, "someone/attention-class"
    )
    release_setup = next(cell for cell in released.cells if cell.cell_type == "code").source
    students = {
        "remounts": _notebook(REMOUNT.format(targets=targets, canary=str(canary)), STUB_UNIFORM),
        "links": _notebook(
            LINKS.format(canary=str(outside), solution=str(course.SOLUTIONS / LESSON), site=str(canary)), STUB_UNIFORM
        ),
        "zeroes_in_place": _notebook(ZEROES_IN_PLACE, STUB_UNIFORM),
        "logs_hidden_inputs": _notebook(LOGS_HIDDEN_INPUTS, PRINTS_HIDDEN_INPUTS),
        "stays_alive": _notebook(STAYS_ALIVE, STUB_UNIFORM),
        "floods": _notebook(FLOODS, STUB_UNIFORM),
        "patches_the_checks": _notebook(PATCHES_THE_CHECKS, STUB_UNIFORM),
        "blank_lines": _notebook(BLANK_LINES),
        "release_copy": _notebook("def average(X):\n    return X.mean(dim=0)\n", setup=release_setup),
        "honest": nbformat.read(course.SOLUTIONS / LESSON, as_version=4),
    }
    for student, notebook in students.items():
        (root / "submissions" / student).mkdir(parents=True)
        nbformat.write(notebook, root / "submissions" / student / LESSON)
    command = [sys.executable, "-m", "utils.grade", str(root / "submissions"), "--out", str(root / "out")]
    command += ["--cell-timeout", "10", "--notebook-timeout", "60", "--max-output", "100000"]
    solution_before = (course.SOLUTIONS / LESSON).read_bytes()
    started = time.perf_counter()
    try:
        finished = subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - started
        time.sleep(1)
        left = _student_processes()
        canaries = (canary.read_text(), outside.read_text())
        solution = (solution_before, (course.SOLUTIONS / LESSON).read_bytes())
    finally:
        canary.unlink()
    assert finished.returncode == 0, finished.stderr
    with open(root / "out" / "gradebook.csv") as file:
        rows = list(csv.DictReader(file))
    with open(root / "out" / "summary.csv") as file:
        summary = {row["student"]: row for row in csv.DictReader(file)}
    points = {(r["student"], r["exercise"]): float(r["points"]) for r in rows}
    return {
        "rows": rows,
        "summary": summary,
        "points": points,
        "out": root / "out",
        "stdout": finished.stdout,
        "seconds": seconds,
        "left": left,
        "canaries": canaries,
        "solution": solution,
        "targets": targets,
    }


def test_the_grader_says_first_that_students_code_never_runs_as_root(escape):
    first = escape["stdout"].splitlines()[0]
    assert "sandbox" in first and "not root" in first and "no capabilities" in first, first


def test_remounting_and_planting_changes_nothing_on_the_host(escape):
    assert escape["points"][("remounts", "average")] == 0  # the refused write stopped its cell
    assert escape["canaries"][0] == CANARY_TEXT, "the student overwrote a file of the instructor's"
    for target in escape["targets"]:
        assert not (Path(target) / "planted_by_student.py").exists(), f"a module was planted in {target}"
    assert not Path("/dev/shm/left_by_student").exists(), "the student wrote to the host's /dev/shm"
    flags = escape["summary"]["remounts"]["integrity"]
    assert "the sandbox refused what a cell tried" in flags and "Read-only file system" in flags, flags


def test_links_in_the_students_folders_reach_nothing(escape):
    assert escape["canaries"] == (CANARY_TEXT, CANARY_TEXT), "a link made someone overwrite a host file"
    before, after = escape["solution"]
    assert after == before, "the solution notebook was changed"
    assert escape["points"][("links", "average")] == 0
    assert "Read-only file system" in escape["summary"]["links"]["integrity"]
    honest = escape["summary"]["honest"]
    assert honest["total"] == honest["maximum"] == "2", honest


def test_zeroing_an_input_in_place_fools_no_hidden_test(escape):
    row = next(r for r in escape["rows"] if r["student"] == "zeroes_in_place" and r["exercise"] == "average")
    assert row["points"] == "0" and row["status"] == "hidden tests failed", row


def test_hidden_test_inputs_never_reach_a_students_cell(escape):
    executed = (escape["out"] / "executed" / "logs_hidden_inputs" / LESSON).read_text()
    assert "inputs the checks used" in executed  # the cell ran and printed what it saw then
    assert "float64" not in executed, "a later cell printed the hidden test's input"
    assert escape["points"][("logs_hidden_inputs", "average")] == 1  # logging is no crime: the answer is right


def test_a_kernel_that_will_not_stop_is_stopped_with_everything_it_started(escape):
    assert escape["left"] == [], f"processes of a student outlived the grading: {escape['left']}"
    assert escape["seconds"] < 300, f"the grader waited {escape['seconds']:.0f} s"
    row = next(r for r in escape["rows"] if r["student"] == "stays_alive" and r["exercise"] == "average")
    assert row["points"] == "0" and row["status"] in ("timeout", "kernel died"), row


def test_no_kind_of_output_passes_the_limit(escape):
    executed = escape["out"] / "executed" / "floods" / LESSON
    assert executed.stat().st_size < 600_000, f"the flood's notebook is {executed.stat().st_size:,} bytes"
    row = next(r for r in escape["rows"] if r["student"] == "floods" and r["exercise"] == "average")
    assert row["points"] == "1", row  # its code is right; only its output was cut


def test_a_patched_check_is_flagged_and_changes_no_verdict(escape):
    assert escape["points"][("patches_the_checks", "average")] == 0
    flags = escape["summary"]["patches_the_checks"]["integrity"]
    assert "utils.checks.check_average" in flags, flags


def test_innocent_notebooks_are_never_flagged(escape):
    summary = escape["summary"]
    for student in ("honest", "release_copy", "blank_lines", "logs_hidden_inputs"):
        assert summary[student]["integrity"] == "", (student, summary[student]["integrity"])
    assert summary["release_copy"]["total"] == "2" and summary["blank_lines"]["01_averaging"] == "2"


def test_results_files_are_the_graders_own(escape):
    """Nothing in the output folder is a link, and every notebook in it is JSON the grader wrote."""
    for path in escape["out"].rglob("*"):
        assert not path.is_symlink(), path
        if path.suffix == ".ipynb":
            json.loads(path.read_text())
    assert os.stat(escape["out"] / "gradebook.csv").st_uid == os.getuid()
