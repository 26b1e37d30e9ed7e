"""Time the lessons' exercises: `python -m utils.benchmark NAME` prints a table.

    python -m utils.benchmark --list                   # the benchmarks there are
    python -m utils.benchmark nlm                      # lesson 03: non-local means, 64², 128², 256² pixels
    python -m utils.benchmark nlm --sizes 64 128 --repeats 5 --threads 2
    python -m utils.benchmark nlm --notebook notebooks/03_non_local_means.ipynb   # time your own code
    python -m utils.benchmark grading --students 30   # grade a synthetic class with utils.grade

A benchmark times an exercise as a notebook defines it: the solution by default, or any
copy of the lesson given with `--notebook`. A lesson adds its own benchmark with the
`@benchmark(name, help)` decorator, on a function that takes the parsed arguments and
returns a `Table`; `arguments=` adds its command-line options.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils import course

PRELUDE = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


class BenchmarkError(Exception):
    """A benchmark that cannot run (a notebook missing, an exercise not written), said plainly."""


@dataclass
class Table:
    """A titled table of results, printed with aligned columns (Markdown, so it pastes into a report)."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        cells = [[str(value) for value in row] for row in self.rows]
        widths = [max(len(str(header)), *(len(row[k]) for row in cells)) for k, header in enumerate(self.headers)]
        lines = [self.title, ""]
        lines.append("| " + " | ".join(str(h).ljust(w) for h, w in zip(self.headers, widths)) + " |")
        lines.append("| " + " | ".join("-" * w for w in widths) + " |")
        lines += ["| " + " | ".join(value.rjust(w) for value, w in zip(row, widths)) + " |" for row in cells]
        return "\n".join(lines + ([""] + self.notes if self.notes else []))


@dataclass(frozen=True)
class Benchmark:
    name: str
    help: str
    run: Callable[[argparse.Namespace], Table]
    arguments: Callable[[argparse.ArgumentParser], None]


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register `run(args) -> Table` as `python -m utils.benchmark NAME`."""

    def register(run: Callable[[argparse.Namespace], Table]) -> Callable[[argparse.Namespace], Table]:
        BENCHMARKS[name] = Benchmark(name, help, run, arguments or (lambda parser: None))
        return run

    return register


def exercises(notebook: str | Path) -> dict:
    """The exercises a lesson notebook defines (its nbgrader solution cells, run in order)."""
    path = Path(notebook)
    if not path.exists():
        raise BenchmarkError(f"no notebook at {path}")
    namespace: dict = {}
    exec(PRELUDE, namespace)
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:  # a notebook is JSON
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution"):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            exec(compile(source, f"{path.name}:{meta.get('grade_id')}", "exec"), namespace)
    return namespace


def measure(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """The median wall-clock time of `fn()` in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _nlm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="image sides (default 64 128 256)")
    parser.add_argument("--patch-radius", type=int, default=3, help="r: patches of (2r+1)² pixels (default 3, 7 × 7)")
    parser.add_argument("--search-radius", type=int, default=10, help="s: a (2s+1)² window (default 10, 21 × 21)")
    parser.add_argument("--sigma", type=float, default=0.1, help="noise standard deviation (default 0.1)")
    parser.add_argument(
        "--notebook",
        default=str(course.SOLUTIONS / "03_non_local_means.ipynb"),
        help="the notebook whose non_local_means to time (default: the solution)",
    )


@benchmark("nlm", "lesson 03: non-local means with a search window, on Grace Hopper's portrait", _nlm_arguments)
def nlm(args: argparse.Namespace) -> Table:
    """Time `non_local_means` on noisy sample images of each size."""
    from utils import images

    non_local_means = exercises(args.notebook).get("non_local_means")
    if non_local_means is None:
        raise BenchmarkError(f"{args.notebook} defines no `non_local_means`")
    r, s = args.patch_radius, args.search_radius
    h = 0.8 * args.sigma * math.sqrt(2 * (2 * r + 1) ** 2)  # lesson 03's rule: h = 0.8 σ √(2P)
    table = Table(
        f"non_local_means from {Path(args.notebook).name}: {2 * r + 1} × {2 * r + 1} patches, "
        f"{2 * s + 1} × {2 * s + 1} search window, h = {h:.2f} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats})",
        ["image", "pixels", "time (s)", "µs per pixel"],
    )
    for size in args.sizes:
        img = images.add_noise(images.load("hopper", size), args.sigma)
        try:
            seconds = measure(lambda img=img: non_local_means(img, r, h, s), repeats=args.repeats)
        except NotImplementedError:
            raise BenchmarkError(f"`non_local_means` in {args.notebook} is not written yet") from None
        table.rows.append([f"{size} × {size}", f"{size * size:,}", f"{seconds:.3f}", f"{1e6 * seconds / size**2:.1f}"])
        if size == 128:
            verdict = "within" if seconds <= 2.0 else "over"
            table.notes.append(f"128 × 128 in {seconds:.2f} s: {verdict} the target of 2 s on 2 CPU cores.")
    return table


def _grading_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--students", type=int, default=30, help="students in the synthetic class (default 30)")
    parser.add_argument("--lessons", nargs="+", default=["01_averaging", "02_weighted_average"], help="lesson stems")
    parser.add_argument("--workers", type=int, default=2, help="notebooks graded at once (default 2)")


@benchmark("grading", "grade a synthetic class (right, blank and wrong answers) with utils.grade", _grading_arguments)
def grading(args: argparse.Namespace) -> Table:
    from utils.instructor import grade

    result = grade.benchmark(args.students, tuple(args.lessons), args.workers)
    timings = sorted(result["timings"])
    table = Table(
        f"Grading {args.students} students × {len(args.lessons)} lessons with {args.workers} workers",
        ["notebooks", "class (s)", "per notebook, wall (s)", "one notebook: median (s)", "slowest (s)"],
    )
    table.rows.append(
        [
            result["notebooks"],
            f"{result['seconds']:.1f}",
            f"{result['seconds'] / max(result['notebooks'], 1):.2f}",
            f"{statistics.median(timings):.2f}" if timings else "-",
            f"{timings[-1]:.2f}" if timings else "-",
        ]
    )
    minutes, cores = result["seconds"] / 60, result["cores"]
    rate = result["students"] / minutes / cores if minutes else float("nan")
    table.notes.append(
        f"{rate:.2f} students per minute per core: {result['students']} students × {len(args.lessons)} lessons in "
        f"{result['seconds']:.0f} s on {cores} cores ({args.workers} workers); a class past one machine: --shard i/n."
    )
    earned = sum(row.points for row in result["rows"])
    possible = sum(row.max_points for row in result["rows"])
    table.notes.append(f"{earned:g} of {possible:g} points given: a third of the class submitted the solutions.")
    where = "in the grader's sandbox" if result.get("sandbox") else "without a sandbox (it cannot be made here)"
    table.notes.append(f"The students' kernels ran {where}; the checks ran in the grader's own process.")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    commands = parser.add_subparsers(dest="name", metavar="NAME")
    for entry in BENCHMARKS.values():
        sub = commands.add_parser(entry.name, help=entry.help, description=entry.help)
        sub.add_argument("--repeats", type=int, default=3, help="timed runs per row; the median is shown (default 3)")
        sub.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
        entry.arguments(sub)
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for entry in BENCHMARKS.values():
            print(f"{entry.name:12s} {entry.help}")
        return 0
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        table = BENCHMARKS[args.name].run(args)
    except BenchmarkError as error:
        print(f"benchmark {args.name}: {error}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)
    print(table.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
