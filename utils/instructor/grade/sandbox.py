"""Where a student's notebook runs: a private root with no network and none of the instructor's files.

On Linux the grader makes the sandbox itself with `unshare` (util-linux): a user namespace (the
student's "root" is nobody outside), a mount namespace whose root is a fresh tmpfs holding only
read-only copies (bind mounts) of the system, the Python interpreter and its packages, plus the
notebook's own work folder; a network namespace with nothing in it; a PID namespace with its own
`/proc`. `solutions/`, the hidden tests, the instructor's tools, other students' work and the
grades are simply not there. The work folder holds the learners' part of `utils/` (copied, without
`utils/instructor/`) and `figures/`, so a lesson's set-up cell finds its helpers as it would at home.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from utils import course

SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child"]
RISK_FLAG = "--no-sandbox-i-accept-the-risk"

# Run by /bin/sh inside the new namespaces: $1 the new root, $2 the work folder, $3 the read-only
# paths (colon-separated), then the command.
SCRIPT = r"""set -e
root=$1; work=$2; readonly_paths=$3; shift 3
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs "$root"
# /tmp first: a course or a virtual environment under /tmp is mounted over it, not hidden by it.
mkdir -p "$root/dev" "$root/proc" "$root/tmp"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
IFS=:
for path in $readonly_paths; do
    if [ -L "$path" ]; then mkdir -p "$root$(dirname "$path")"; ln -s "$(readlink "$path")" "$root$path"; continue; fi
    [ -d "$path" ] || continue
    mkdir -p "$root$path"; mount --rbind "$path" "$root$path"; mount -o remount,bind,ro "$root$path"
done
unset IFS
mkdir -p "$root$work"; mount --bind "$work" "$root$work"
cd "$root"; mkdir .old; pivot_root . .old; umount -l /.old; rmdir /.old
cd "$work"; exec "$@"
"""


def readonly_paths() -> list[str]:
    """The system and the interpreter (with its packages): what a notebook needs to run, read-only."""
    paths = [p for p in SYSTEM if os.path.lexists(p)]
    interpreter = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)}
    interpreter |= {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
    interpreter |= {p for p in sys.path if p and Path(p).is_dir() and "site-packages" in p}
    root = str(course.ROOT.resolve())
    for path in sorted(interpreter):
        real = str(Path(path).resolve())
        if any(real == p or real.startswith(p + "/") for p in paths):
            continue
        if real == root or (real.startswith(root + "/") and "site-packages" not in real and ".venv" not in real):
            continue  # never the course itself: only a virtual environment inside it
        paths.append(real)
    return paths


def wrap(command: list[str], work: Path) -> list[str]:
    """`command`, run inside a fresh sandbox whose only writable folder is `work`."""
    root = work / ".sandbox-root"
    root.mkdir(exist_ok=True)
    return [*UNSHARE, "/bin/sh", "-c", SCRIPT, "sandbox", str(root), str(work), ":".join(readonly_paths()), *command]


@functools.cache
def problem() -> str | None:
    """Why the sandbox cannot be made here (None when it can): tried once, with a harmless command."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="grade-sandbox-") as folder:
        probe = [sys.executable, "-c", "import socket, os; print(os.path.exists('/proc/self'))"]
        try:
            done = subprocess.run(wrap(probe, Path(folder)), capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"making the sandbox failed: {error}"
    if done.returncode != 0 or done.stdout.strip() != "True":
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"making the sandbox failed ({why}); unprivileged user namespaces may be disabled here"
    return None


def learner_files(work: Path) -> None:
    """Copy what lessons import into `work`: `utils/` without the instructor's tools, and `figures/`."""
    skip = shutil.ignore_patterns("__pycache__", "instructor", "*.pyc")
    shutil.copytree(course.ROOT / "utils", work / "utils", ignore=skip)
    if (course.ROOT / "figures").is_dir():
        shutil.copytree(course.ROOT / "figures", work / "figures", ignore=skip)
