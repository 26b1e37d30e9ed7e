"""Students who try to fool the grader: every one scores 0 and is flagged; honest ones keep their points.

The verdicts are made in the grader's own process, which never runs student code; the student's
kernel runs in a sandbox without network and without the instructor's files. Each case below
patches, fakes or snoops from inside the code the grader does run (an exercise's own cell and
the body of the exercise's function, called by the check).
"""

import csv
import socket
import subprocess
import sys
import threading

import nbformat
import pytest

from utils import course
from utils.instructor.grade import sandbox

LESSON = "01_averaging.ipynb"
WRONG_AVERAGE = "def average(X):\n    return torch.zeros(X.shape[-1])\n"
WRONG_UNIFORM = "def uniform_weights(n):\n    return torch.eye(n)\n"
STUB_AVERAGE = "def average(X):\n    raise NotImplementedError\n"
STUB_UNIFORM = "def uniform_weights(n):\n    raise NotImplementedError\n"

PATCH_AT_THE_TOP = """
import importlib, sys, types, torch
fake = types.ModuleType("utils.checks")
fake.__getattr__ = lambda name: (lambda *args, **kwargs: print("✔ passes"))
importlib.import_module = lambda name, package=None: fake
sys.modules["utils.checks"] = fake
checks = fake
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
"""

PATCH_WHEN_CALLED = """
def {name}(*args, **kwargs):
    import builtins, importlib, sys, torch
    torch.allclose = lambda *a, **k: True
    torch.testing.assert_close = lambda *a, **k: None
    builtins.AssertionError = type("AssertionError", (Exception,), {{}})
    importlib.import_module = lambda *a, **k: None
    sys.modules.pop("utils.checks", None)
    return torch.zeros(3)
"""

LIAR = """
class Anything:
    def __eq__(self, other):
        return True
    def __getattr__(self, name):
        return lambda *args, **kwargs: self
    shape = property(lambda self: (3,))

class Liar(torch.Tensor):
    def __eq__(self, other):
        return True
    def allclose(self, *args, **kwargs):
        return True

def average(X):
    return Anything()

def uniform_weights(n):
    return torch.zeros(n, n).as_subclass(Liar)
"""

READS_SOLUTIONS = """
import json
from pathlib import Path

def _solution(name):
    root = Path({root!r})
    for folder in [root, *Path.cwd().parents]:
        path = folder / "solutions" / "01_averaging.ipynb"
        if path.exists():
            cells = json.loads(path.read_text())["cells"]
            namespace = {{"torch": torch}}
            for cell in cells:
                if cell.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") == name:
                    exec("".join(cell["source"]), namespace)
            return namespace[name]
    raise FileNotFoundError("no solutions here")

def average(X):
    return _solution("average")(X)

def uniform_weights(n):
    return _solution("uniform_weights")(n)
"""

NETWORK = """
import socket

def _ask(message):
    with socket.create_connection(("127.0.0.1", {port}), timeout=3) as connection:
        connection.sendall(message.encode())
        return connection.recv(100)

def average(X):
    _ask("average")  # an answer from outside (here: only a permission to be right)
    return X.mean(dim=0)

def uniform_weights(n):
    _ask("uniform_weights")
    return torch.ones(n, n) / n
"""

SERVING_FORGED = """
import torch

def __grader_serve(request, answer):
    torch.save({"ok": True, "value": torch.ones(3)}, answer)

def average(X):
    raise NotImplementedError

def uniform_weights(n):
    raise NotImplementedError
"""


def _notebook(average: str, uniform: str) -> nbformat.NotebookNode:
    """The solution notebook with the two exercise cells replaced."""
    notebook = nbformat.read(course.SOLUTIONS / LESSON, as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "average":
            cell.source = average
        elif grade_id == "uniform_weights":
            cell.source = uniform
    return notebook


class Listener:
    """A server on 127.0.0.1 that answers anyone who connects, and remembers that they did."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port, self.heard, self.running = self.server.getsockname()[1], [], True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            with connection:
                self.heard.append(connection.recv(100))
                connection.sendall(b"ok")

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


def _class(root, port: int) -> dict[str, nbformat.NotebookNode]:
    return {
        "patches_at_the_top": _notebook(PATCH_AT_THE_TOP + STUB_AVERAGE, PATCH_AT_THE_TOP + STUB_UNIFORM),
        "patches_when_called": _notebook(
            PATCH_WHEN_CALLED.format(name="average"), PATCH_WHEN_CALLED.format(name="uniform_weights")
        ),
        "fake_checks_and_wrong": _notebook(PATCH_AT_THE_TOP + WRONG_AVERAGE, PATCH_AT_THE_TOP + WRONG_UNIFORM),
        "lies_in_eq": _notebook(LIAR, "pass"),
        "reads_solutions": _notebook(READS_SOLUTIONS.format(root=str(course.ROOT)), "pass"),
        "uses_the_network": _notebook(NETWORK.format(port=port), "pass"),
        "forges_the_answers": _notebook(SERVING_FORGED, "pass"),
        "honest": nbformat.read(course.SOLUTIONS / LESSON, as_version=4),
        "honest_but_wrong": _notebook(WRONG_AVERAGE, "def uniform_weights(n):\n    return torch.ones(n, n) / n\n"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    problem = sandbox.problem()
    if problem:
        pytest.skip(f"the grader's sandbox cannot be made on this machine: {problem}")
    root = tmp_path_factory.mktemp("hostile")
    listener = Listener()
    try:
        for student, notebook in _class(root, listener.port).items():
            (root / "submissions" / student).mkdir(parents=True)
            nbformat.write(notebook, root / "submissions" / student / LESSON)
        command = [sys.executable, "-m", "utils.grade", str(root / "submissions"), "--out", str(root / "out")]
        command += ["--cell-timeout", "20", "--notebook-timeout", "240"]
        finished = subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=900)
    finally:
        listener.close()
    assert finished.returncode == 0, finished.stderr
    with open(root / "out" / "gradebook.csv") as file:
        rows = list(csv.DictReader(file))
    with open(root / "out" / "summary.csv") as file:
        summary = {row["student"]: row for row in csv.DictReader(file)}
    return rows, summary, listener.heard, root / "out"


# Flagged for what the grader saw happen: patches the kernel found, the network refused, the serving
# function silenced. The others fail as wrong code fails, and nothing about them was seen to flag.
FLAGGED = [
    "patches_at_the_top",
    "patches_when_called",
    "fake_checks_and_wrong",
    "uses_the_network",
    "forges_the_answers",
]
HOSTILE = [*FLAGGED, "lies_in_eq", "reads_solutions"]


@pytest.mark.parametrize("student", HOSTILE)
def test_every_hostile_student_scores_0(graded, student):
    rows, summary, _, _ = graded
    mine = [row for row in rows if row["student"] == student]
    assert [row["points"] for row in mine] == ["0", "0"], mine
    assert summary[student]["total"] == "0", summary[student]
    assert bool(summary[student]["integrity"]) == (student in FLAGGED), summary[student]


def test_honest_students_keep_their_points_and_are_not_flagged(graded):
    rows, summary, _, _ = graded
    assert (summary["honest"]["total"], summary["honest"]["percent"], summary["honest"]["integrity"]) == (
        "2",
        "100.0",
        "",
    )
    points = {row["exercise"]: row["points"] for row in rows if row["student"] == "honest_but_wrong"}
    assert points == {"average": "0", "uniform_weights": "1"}
    assert summary["honest_but_wrong"]["integrity"] == ""


def test_the_sandbox_has_no_network_and_no_solutions(graded):
    rows, _, heard, _ = graded
    assert heard == [], "a student's code reached a server on 127.0.0.1"
    message = next(r["message"] for r in rows if r["student"] == "reads_solutions" and r["exercise"] == "average")
    assert "FileNotFoundError" in message, message
    message = next(r["message"] for r in rows if r["student"] == "uses_the_network" and r["exercise"] == "average")
    assert "unreachable" in message or "OSError" in message, message


def test_patches_made_at_run_time_are_seen(graded):
    summary = graded[1]
    assert "patched at run time: torch.allclose" in summary["patches_when_called"]["integrity"]
    assert "builtins.AssertionError" in summary["patches_when_called"]["integrity"]
    assert "sys.modules['utils.checks']" in summary["patches_at_the_top"]["integrity"]


def test_a_lying_object_is_named_for_what_it_is(graded):
    rows = graded[0]
    message = next(r["message"] for r in rows if r["student"] == "lies_in_eq" and r["exercise"] == "average")
    assert "returned Anything" in message and "should be a torch tensor" in message, message


def test_summary_and_picture_cover_every_student(graded):
    _, summary, _, out = graded
    assert set(summary) == set(HOSTILE) | {"honest", "honest_but_wrong"}
    assert (out / "class.png").read_bytes().startswith(b"\x89PNG")
    hidden = "assert average(X64).dtype == torch.float64"
    assert hidden not in (out / "executed" / "honest" / LESSON).read_text()
    assert hidden in (out / "instructor" / "honest" / LESSON).read_text()
    assert "instructor/" in (out / "README.txt").read_text()
