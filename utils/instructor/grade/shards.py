"""A class graded on several machines: each grades a share of the students (`--shard i/n`), and `merge`
joins the shares into one folder, the same as one machine grading them all would have written.

Share i of n is every n-th student of the class in sorted order, starting from the i-th: the shares
partition the class, whatever its size, and every machine computes the same ones. Each shard's folder
holds `shard.json` (i, n, its students and the whole class), so that `merge` can refuse a shard
missing, a shard given twice, shards of different classes or splits, and a student's lesson graded in
two shards.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from utils.instructor.grade import report
from utils.instructor.grade.report import Row

SHARD_FILE = "shard.json"


class MergeError(Exception):
    """Shards that cannot be joined, said plainly; nothing is written."""


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (1 ≤ i ≤ n) as (i, n): for argparse."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not found or not 1 <= int(found[1]) <= int(found[2]):
        raise argparse.ArgumentTypeError(f"{text!r}: give i/n with 1 ≤ i ≤ n, e.g. 1/4")
    return int(found[1]), int(found[2])


def share(students: list[str], shard: tuple[int, int]) -> list[str]:
    """The students that shard i of n grades: every n-th of the sorted class, from the i-th."""
    index, count = shard
    return sorted(students)[index - 1 :: count]


def document(shard: tuple[int, int], students: list[str], everyone: list[str], lessons: list[str]) -> str:
    """The shard.json of a shard's folder."""
    index, count = shard
    record = {"shard": index, "shards": count, "students": students, "class": sorted(everyone), "lessons": lessons}
    return json.dumps(record, indent=1, ensure_ascii=False) + "\n"


def _shard(folder: Path) -> dict:
    path = folder / SHARD_FILE
    if not folder.is_dir():
        raise MergeError(f"{folder} is not a folder")
    if not path.is_file():
        raise MergeError(f"{folder} has no {SHARD_FILE}: it was not graded with --shard i/n")
    if not (folder / "gradebook.json").is_file():
        raise MergeError(f"{folder} has no gradebook.json: its grading did not finish")
    return json.loads(path.read_text(encoding="utf-8"))


def check(folders: list[Path]) -> dict[Path, list[Row]]:
    """Every shard's rows, once sure the shards are all of one class and split, each once, none missing,
    and no student's lesson in two of them; `MergeError` otherwise."""
    records = {folder: _shard(folder) for folder in folders}
    counts = sorted({record["shards"] for record in records.values()})
    if len(counts) != 1:
        raise MergeError(f"the shards are of different splits (into {' and '.join(map(str, counts))}): grade again")
    count = counts[0]
    if len({tuple(record["class"]) for record in records.values()}) != 1:
        raise MergeError("the shards were graded from different submissions (their classes differ)")
    seen: dict[int, Path] = {}
    for folder, record in records.items():
        if record["shard"] in seen:
            raise MergeError(f"shard {record['shard']}/{count} is given twice: {seen[record['shard']]} and {folder}")
        seen[record["shard"]] = folder
    missing = [f"{index}/{count}" for index in range(1, count + 1) if index not in seen]
    if missing:
        raise MergeError(f"shard {', '.join(missing)} missing: a merge needs every shard of the class")
    rows = {folder: report.read_rows(folder) for folder in folders}
    owner: dict[tuple[str, str], Path] = {}
    for folder, shard_rows in rows.items():
        for pair in dict.fromkeys((row.student, row.lesson) for row in shard_rows):
            if pair in owner:
                raise MergeError(f"{pair[0]} · {pair[1]} is graded in two shards: {owner[pair]} and {folder}")
            owner[pair] = folder
    everyone = next(iter(records.values()))["class"]
    graded = {student for student, _ in owner}
    absent = [student for student in everyone if student not in graded]
    if absent:
        raise MergeError(f"no rows for {', '.join(absent)} in any shard: a shard's grading is incomplete")
    return rows


def merge(folders: list[Path], out: Path, exercises: Callable[[str], list[tuple[str, float]]]) -> list[Row]:
    """Join the shards' folders into `out`: the gradebook, summary, picture and feedback of all of them, and
    their executed notebooks. Rows already in `out` are updated, never dropped. Returns every row."""
    out = out.resolve()
    folders = [folder.resolve() for folder in folders]
    if out in folders or (out / SHARD_FILE).exists():
        raise MergeError(f"{out} is a shard's folder: merge into a folder of its own")
    rows = check(folders)
    for folder in folders:
        with report.Staging() as staging:
            for part in ("executed", "instructor"):
                for path in sorted((folder / part).rglob("*")) if (folder / part).is_dir() else []:
                    if path.is_file() and not path.is_symlink():
                        staging.write(out / part / path.relative_to(folder / part), path.read_bytes())
    merged = [row for folder in folders for row in rows[folder]]
    combined = report.complete(report.combine(report.read_rows(out), merged), exercises)
    report.write_outputs(combined, out)
    return combined
