"""Grade a class: run every submitted notebook, and judge it where no student code runs.

    python -m utils.grade SUBMISSIONS --out DIR [--workers 2] [--cell-timeout 60] [--notebook-timeout 600]
                                                [--memory-mb 4096] [--max-output 1000000]
                                                [--student NAME ...] [--shard i/n]
    python -m utils.grade merge SHARD_DIR... --out DIR

SUBMISSIONS holds one folder per student, named for the student, with any of the lesson
notebooks as the learner saved them (the file names of `notebooks/`, or another name that says
the lesson). The parts:

- `intake`: which file of a student's folder is which lesson; read only if it is a regular file
  (never through a link, never a pipe, at most 20 MB), and said when it is not.
- `assemble`: what runs for a submission (the instructor's set-up, the student's exercise cells)
  and what judges it (the instructor's checks and hidden tests); integrity flags.
- `sandbox`: the student's kernel runs with no network and none of the instructor's files.
- `run`: one notebook; the student's cells in the sandboxed kernel, the checks and hidden tests
  in the grader's own process, through `proxy` (stand-ins for the student's objects) and `serve`
  (the few lines the kernel runs to answer them). No student code runs where a verdict is made.
- `report`: rows, feedback, `gradebook.csv`, `summary.csv`, `class.png`, the executed notebooks;
  an earlier gradebook updated, never replaced; every file put in place once complete.
- `shards`: a share of the class per machine (`--shard i/n`), and `merge` to join the shares.
- `main`: the class, in parallel; the command line.

It exits 0 once it has graded, whatever the students submitted; 2 for its own usage errors (or
shards that do not join), or when the sandbox cannot be made and the instructor did not accept
the risk.
"""

from utils.instructor.grade.assemble import Exercise, Plan, assemble, split_hidden, student_cell
from utils.instructor.grade.main import benchmark, find_jobs, grade, grade_job, main
from utils.instructor.grade.report import COLUMNS, STATUS_WORDS, Row, feedback, score

__all__ = [
    "COLUMNS",
    "STATUS_WORDS",
    "Exercise",
    "Plan",
    "Row",
    "assemble",
    "benchmark",
    "feedback",
    "find_jobs",
    "grade",
    "grade_job",
    "main",
    "score",
    "split_hidden",
    "student_cell",
]
