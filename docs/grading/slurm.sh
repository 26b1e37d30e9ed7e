#!/bin/bash
# Grade a class on a Slurm cluster: an array of jobs, each grading one shard of the students
# (`python -m utils.grade SUBMISSIONS --shard i/n`), then one job, started once every shard has
# finished well, that merges them (`python -m utils.grade merge`) into GRADES/all.
#
# Run it by hand on the login node, from the course's folder, with the course's virtual
# environment active (the jobs inherit it):
#
#     source .venv/bin/activate
#     bash docs/grading/slurm.sh SUBMISSIONS GRADES [SHARDS]     # SHARDS: 8 if not given
#
# Each shard grades with 2 workers on 2 cores; a notebook may use 4 GB (the grader's default).
# The grader's sandbox needs unprivileged user namespaces; where a cluster forbids them the grader
# says so and stops (see the README before choosing --no-sandbox-i-accept-the-risk).
#
#SBATCH --job-name=grade
#SBATCH --cpus-per-task=2
#SBATCH --mem=12G
#SBATCH --time=02:00:00
#SBATCH --output=slurm-grade-%A_%a.out

set -euo pipefail
submissions=$1
grades=$2
shards=${3:-8}

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    # By hand: submit the array of shards, then the merge, which waits for all of them (afterok).
    array=$(sbatch --parsable --array=1-"$shards" "$0" "$submissions" "$grades" "$shards")
    merge=$(sbatch --parsable --dependency=afterok:"$array" --job-name=grade-merge --cpus-per-task=1 \
        --mem=4G --time=00:30:00 --output=slurm-grade-merge-%j.out \
        --wrap "python -m utils.grade merge $(printf %q "$grades")/shard-* --out $(printf %q "$grades/all")")
    echo "submitted shards 1-$shards as job $array; the merge into $grades/all as job $merge"
    exit 0
fi

python -m utils.grade "$submissions" --shard "$SLURM_ARRAY_TASK_ID/$shards" \
    --out "$grades/shard-$SLURM_ARRAY_TASK_ID" --workers "${SLURM_CPUS_PER_TASK:-2}"
