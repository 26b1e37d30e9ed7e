"""A class graded in shards (`--shard i/n`) and merged (`python -m utils.grade merge`) is the class graded
in one run: the same gradebook, summary, picture, feedback and executed notebooks. A merge refuses a shard
missing, a shard given twice, and a student's lesson graded twice. The examples for GitHub Actions and
Slurm under docs/grading/ say the same number of shards everywhere."""

import filecmp
import importlib
import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

from utils import course
from utils.instructor.grade import report, sandbox, shards

grading = importlib.import_module("utils.instructor.grade.main")  # the module (the package exports its `main`)
LESSON = "01_averaging.ipynb"
DOCS = course.ROOT / "docs" / "grading"


def _grade(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "utils.grade", *arguments, "--cell-timeout", "30", "--notebook-timeout", "120"]
    command.append(sandbox.RISK_FLAG)  # the sandbox is not the point here
    return subprocess.run(command, cwd=course.ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Three students (right, blank, wrong) graded in one run, and in two shards merged."""
    root = tmp_path_factory.mktemp("shards")
    submissions = root / "submissions"
    for student, folder in (("ace", course.SOLUTIONS), ("blank", course.NOTEBOOKS), ("wrong", course.SOLUTIONS)):
        (submissions / student).mkdir(parents=True)
        shutil.copy(folder / LESSON, submissions / student / LESSON)
    wrong = nbformat.read(submissions / "wrong" / LESSON, as_version=4)
    for cell in wrong.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "average":
            cell.source = "def average(X):\n    return X.sum(dim=0)\n"
    nbformat.write(wrong, submissions / "wrong" / LESSON)
    finished = {"one": _grade(str(submissions), "--out", str(root / "one"))}
    for index in (1, 2):
        finished[index] = _grade(str(submissions), "--shard", f"{index}/2", "--out", str(root / f"shard{index}"))
    merge = [sys.executable, "-m", "utils.grade", "merge", str(root / "shard1"), str(root / "shard2")]
    finished["merge"] = subprocess.run(
        [*merge, "--out", str(root / "merged")], cwd=course.ROOT, capture_output=True, text=True, timeout=300
    )
    for name, done in finished.items():
        assert done.returncode == 0, (name, done.stdout, done.stderr)
    return root, finished


def test_each_shard_grades_its_share_and_says_which(graded):
    root, finished = graded
    records = [json.loads((root / f"shard{i}" / "shard.json").read_text()) for i in (1, 2)]
    assert [(r["shard"], r["shards"], r["students"]) for r in records] == [(1, 2, ["ace", "wrong"]), (2, 2, ["blank"])]
    assert all(r["class"] == ["ace", "blank", "wrong"] and r["lessons"] == ["01_averaging"] for r in records)
    assert "graded 2 notebooks of 2 students" in finished[1].stdout
    assert "graded 1 notebooks of 1 students" in finished[2].stdout


def test_the_merged_shards_are_the_one_run(graded):
    root, _ = graded
    one, merged = root / "one", root / "merged"
    for name in ("gradebook.csv", "summary.csv", "gradebook.json", "class.png", "README.txt"):
        assert (merged / name).read_bytes() == (one / name).read_bytes(), name
    assert not (merged / "shard.json").exists()
    for part in ("feedback", "executed", "instructor"):
        files = sorted(str(p.relative_to(one / part)) for p in (one / part).rglob("*") if p.is_file())
        assert files == sorted(str(p.relative_to(merged / part)) for p in (merged / part).rglob("*") if p.is_file())
        assert files and (part != "feedback" or filecmp.cmpfiles(one / part, merged / part, files, shallow=False)[0])
    with open(merged / "summary.csv") as file:
        assert file.read().splitlines()[1:] == ["ace,2,2,2,100.0,", "blank,0,0,2,0.0,", "wrong,1,1,2,50.0,"]


def _fake_shard(folder, index, count, students, everyone, rows=None):
    rows = (
        rows if rows is not None else [report.Row(s, "01_averaging", "average", 1.0, 1.0, "passed") for s in students]
    )
    extra = {shards.SHARD_FILE: shards.document((index, count), students, everyone, ["01_averaging"])}
    report.write_outputs(rows, folder, extra)
    return folder


def _merge(capsys, *folders, out) -> tuple[int, str]:
    code = grading.main(["merge", *map(str, folders), "--out", str(out)])
    return code, capsys.readouterr().err


def test_a_merge_refuses_a_shard_missing_or_twice_and_a_student_twice(tmp_path, capsys):
    everyone = ["ace", "bob", "cy"]
    one = _fake_shard(tmp_path / "s1", 1, 3, ["ace"], everyone)
    two = _fake_shard(tmp_path / "s2", 2, 3, ["bob"], everyone)
    three = _fake_shard(tmp_path / "s3", 3, 3, ["cy"], everyone)
    out = tmp_path / "out"
    code, said = _merge(capsys, one, two, out=out)
    assert code == 2 and "shard 3/3 missing" in said and "Nothing written" in said and not out.exists()
    again = shutil.copytree(two, tmp_path / "s2-again")
    code, said = _merge(capsys, one, two, again, out=out)
    assert code == 2 and "shard 2/3 is given twice" in said
    twice = _fake_shard(
        tmp_path / "s3-twice",
        3,
        3,
        ["cy"],
        everyone,
        [report.Row("bob", "01_averaging", "average", 0.0, 1.0, "failed")],
    )
    code, said = _merge(capsys, one, two, twice, out=out)
    assert code == 2 and "bob · 01_averaging is graded in two shards" in said
    other = _fake_shard(tmp_path / "other", 3, 4, ["cy"], everyone)
    code, said = _merge(capsys, one, two, other, out=out)
    assert code == 2 and "different splits" in said
    plain = tmp_path / "plain"
    report.write_outputs([report.Row("cy", "01_averaging", "average", 1.0, 1.0, "passed")], plain)
    code, said = _merge(capsys, one, two, plain, out=out)
    assert code == 2 and "has no shard.json" in said
    code, said = _merge(capsys, one, two, three, out=one)
    assert code == 2 and "is a shard's folder" in said
    assert not out.exists()
    assert _merge(capsys, one, two, three, out=out)[0] == 0
    assert [r.student for r in report.read_rows(out)] == everyone


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_the_shares_partition_the_class_evenly(count):
    everyone = [f"student{k:02d}" for k in range(7)]
    shares = [shards.share(list(reversed(everyone)), (index, count)) for index in range(1, count + 1)]
    assert sorted(s for share in shares for s in share) == everyone
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_shard_is_i_of_n(text):
    with pytest.raises(Exception, match="give i/n"):
        shards.parse_shard(text)


def test_the_github_actions_example_shards_and_merges_the_same_number():
    workflow = yaml.safe_load((DOCS / "github-actions.yml").read_text())
    count = int(workflow["env"]["SHARDS"])
    grade, merge = workflow["jobs"]["grade"], workflow["jobs"]["merge"]
    assert grade["strategy"]["matrix"]["shard"] == list(range(1, count + 1))
    runs = [step.get("run", "") for step in grade["steps"]]
    assert any(
        "--shard ${{ matrix.shard }}/${{ env.SHARDS }}" in run and "--out grades-${{ matrix.shard }}" in run
        for run in runs
    )
    uploads = [step["with"] for step in grade["steps"] if step.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads == [
        {"name": "grades-${{ matrix.shard }}", "path": "grades-${{ matrix.shard }}", "retention-days": 7}
    ]
    assert merge["needs"] == "grade"
    downloads = [
        step["with"] for step in merge["steps"] if step.get("uses", "").startswith("actions/download-artifact")
    ]
    assert downloads == [{"pattern": "grades-*", "path": "shards"}]
    assert any("utils.grade merge shards/grades-* --out grades" in step.get("run", "") for step in merge["steps"])


def test_the_slurm_example_is_a_shell_script_whose_array_is_its_shards():
    script = (DOCS / "slurm.sh").read_text()
    assert subprocess.run(["bash", "-n", str(DOCS / "slurm.sh")], capture_output=True).returncode == 0
    assert '--array=1-"$shards"' in script and '--shard "$SLURM_ARRAY_TASK_ID/$shards"' in script
    assert "--dependency=afterok:" in script and re.search(r"utils\.grade merge .*shard-\*", script)


def test_the_grading_benchmark_says_students_per_minute_per_core(monkeypatch, capsys):
    from utils.instructor import benchmark

    canned = {"seconds": 120.0, "notebooks": 60, "timings": [2.0] * 60, "rows": [], "sandbox": True}
    monkeypatch.setattr(grading, "benchmark", lambda *args: {**canned, "students": 30, "cores": 2})
    monkeypatch.setattr(importlib.import_module("utils.instructor.grade"), "benchmark", grading.benchmark)
    assert benchmark.main(["grading", "--students", "30"]) == 0
    said = capsys.readouterr().out
    assert "7.50 students per minute per core: 30 students × 2 lessons in 120 s on 2 cores" in said, said
