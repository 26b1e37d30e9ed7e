"""Where a student's notebook runs: a private root, no network, none of the instructor's files,
and no privilege at all.

On Linux the grader makes the sandbox itself with util-linux's `unshare` and `setpriv`, in two steps:

1. A trusted shell in new mount, network, PID, IPC and UTS namespaces (and, when the grader is not
   root, a user namespace whose root is the grader) builds the student's world: a fresh tmpfs root
   holding read-only, `nosuid` bind mounts of the system and of the Python interpreter with its
   packages; a private `/dev` with five devices and a `/dev/shm` of its own; a `/proc` of the new
   PID namespace; a small `/tmp` and a small work folder (tmpfs: the disk a student can fill is
   bounded), holding the learners' part of `utils/` and `figures/` (read-only), the kernel's
   connection file (read-only) and the folder of its sockets.
2. The student's kernel starts from there as an unprivileged user with no capabilities and
   `no_new_privs`: graded as root, a user id that owns nothing on the machine (`setpriv --reuid`,
   every capability dropped from every set); graded as an ordinary user, a nested user namespace
   in which the student is not root. Either way the mounts were made by someone more privileged,
   so the student cannot remount them writable, not even from a user namespace of their own
   (the kernel locks them).

`solutions/`, the hidden tests, the instructor's tools, other students' work and the grades are
simply not there. When the shell that built the sandbox dies, its PID namespace dies with every
process the student started.
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
RISK_FLAG = "--no-sandbox-i-accept-the-risk"
STUDENT_UID = 2_999_900_000  # graded as root: the students' user ids (from here) own nothing on this machine
UIDS = 100_000  # how many such ids there are
NESTED_UID = 1000  # graded as an ordinary user: the student's id inside the nested user namespace
PROCESSES = 512  # processes and threads the student's code may run at once
SIZES = {"work": "256m", "tmp": "512m", "shm": "64m"}  # the tmpfs a student may write to

# Run by /bin/sh inside the new namespaces: $1 the new root, $2 the work folder, $3 the read-only
# paths (colon-separated), $4 the student's uid ("" when the grader is not root), then the command.
SCRIPT = r"""set -eu
root=$1; work=$2; readonly_paths=$3; student=$4; shift 4
mount --make-rprivate /
mount -t tmpfs -o mode=755,size=16m tmpfs "$root"
mkdir -p "$root/dev" "$root/proc" "$root/tmp"
mount -t tmpfs -o mode=755,size=1m,nosuid,noexec tmpfs "$root/dev"
for device in null zero full random urandom; do
    touch "$root/dev/$device"; mount --bind "/dev/$device" "$root/dev/$device"
done
mkdir "$root/dev/shm"; mount -t tmpfs -o mode=1777,size=@shm@,nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"; ln -s /proc/self/fd/1 "$root/dev/stdout"; ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# /tmp before the read-only folders: a course or a virtual environment under /tmp is mounted over it.
mount -t tmpfs -o mode=1777,size=@tmp@,nosuid,nodev tmpfs "$root/tmp"
mkdir -m 1777 "$root/tmp/home"
IFS=:
for path in $readonly_paths; do
    if [ -L "$path" ]; then mkdir -p "$root$(dirname "$path")"; ln -s "$(readlink "$path")" "$root$path"; continue; fi
    [ -d "$path" ] || continue
    mkdir -p "$root$path"; mount --bind "$path" "$root$path"; mount -o remount,bind,ro,nosuid,nodev "$root$path"
done
unset IFS
mkdir -p "$root$work"; mount -t tmpfs -o mode=1777,size=@work@,nosuid,nodev tmpfs "$root$work"
for part in utils figures kernel.json; do
    [ -e "$work/$part" ] || continue
    if [ -d "$work/$part" ]; then mkdir "$root$work/$part"; else touch "$root$work/$part"; fi
    mount --bind "$work/$part" "$root$work/$part"; mount -o remount,bind,ro,nosuid,nodev "$root$work/$part"
done
if [ -d "$work/ipc" ]; then mkdir "$root$work/ipc"; mount --bind "$work/ipc" "$root$work/ipc"; fi
cd "$root"; mkdir .old; pivot_root . .old; umount -l /.old; rmdir /.old
cd "$work"
unset JPY_PARENT_PID  # the kernel's parent is in another PID namespace: the sandbox ends the kernel, not a poller
if [ -n "$student" ]; then
    # Graded as root: this shell stays as the namespace's init (root, out of the student's reach), and
    # the student's code runs as a user that owns nothing, with no capability and no way to gain one.
    prlimit --nproc=@nproc@ -- setpriv --reuid="$student" --regid="$student" --clear-groups \
        --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs -- "$@"
else
    # Graded as an ordinary user: nothing privileged may stay behind (the student could reach it), so
    # the student's code becomes the init, in a nested user namespace where it is not root.
    exec setpriv --no-new-privs -- unshare --user --map-user=@nested@ --map-group=@nested@ -- "$@"
fi
"""


def as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def script() -> str:
    text = SCRIPT.replace("@nproc@", str(PROCESSES)).replace("@nested@", str(NESTED_UID))
    for name, size in SIZES.items():
        text = text.replace(f"@{name}@", size)
    return text


def unshare() -> list[str]:
    """The outer namespaces: as root no user namespace (the shell keeps real root to build the mounts)."""
    spaces = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
    return ["unshare", *spaces] if as_root() else ["unshare", "--user", "--map-root-user", *spaces]


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


def student_uid() -> int | None:
    """The user id the student's code runs as on this machine: graded as root, one that owns nothing, its own
    for each notebook graded at once (so that the limit on processes is each student's); None graded as an
    ordinary user (the grader's own id, as a non-root user of a nested namespace)."""
    return STUDENT_UID + os.getpid() % UIDS if as_root() else None


def prepare(work: Path) -> Path:
    """Make `work` ready for a sandbox: the folder of the kernel's sockets, writable by the student only
    until the kernel has started (see `close_sockets`). Returns that folder."""
    sockets = work / "ipc"
    sockets.mkdir(exist_ok=True)
    uid = student_uid()
    if uid is not None:
        os.chown(sockets, uid, uid)
    return sockets


def close_sockets(work: Path) -> None:
    """Once the kernel has made its sockets: graded as root, the student can add nothing more to the one
    folder of theirs that the grader can see."""
    sockets = work / "ipc"
    if as_root() and sockets.is_dir():
        os.chown(sockets, 0, 0)
        os.chmod(sockets, 0o755)


def wrap(command: list[str], work: Path) -> list[str]:
    """`command`, run inside a fresh sandbox where it may write only to its own small tmpfs folders."""
    root = work.parent / f".{work.name}-root"
    root.mkdir(exist_ok=True)
    uid = student_uid()
    return [
        *unshare(),
        "/bin/sh",
        "-c",
        script(),
        "sandbox",
        str(root),
        str(work),
        ":".join(readonly_paths()),
        "" if uid is None else str(uid),
        *command,
    ]


@functools.cache
def problem() -> str | None:
    """Why the sandbox cannot be made here (None when it can): tried once, with a harmless command."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    for tool in ("unshare", "setpriv", "prlimit"):
        if shutil.which(tool) is None:
            return f"`{tool}` (util-linux) is not installed"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="grade-sandbox-") as folder:
        work = Path(folder) / "work"
        work.mkdir()
        probe = [sys.executable, "-c", "import os; print(os.path.exists('/proc/self'), os.geteuid() != 0)"]
        try:
            done = subprocess.run(wrap(probe, work), capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"making the sandbox failed: {error}"
    if done.returncode != 0 or done.stdout.split() != ["True", "True"]:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"making the sandbox failed ({why}); unprivileged user namespaces may be disabled here"
    return None


def describe() -> str:
    """One line for the grader's first output: who the students' code runs as."""
    if as_root():
        return (
            f"students' code runs in a sandbox as a user of its own ({STUDENT_UID} and up; not root), with no capabilities and "
            "no_new_privs, no network, read-only system folders"
        )
    return (
        f"students' code runs in a sandbox as user {NESTED_UID} of a nested user namespace (not root), with no "
        "capabilities and no_new_privs, no network, read-only system folders"
    )


def learner_files(work: Path) -> None:
    """Copy what lessons import into `work`: `utils/` without the instructor's tools, and `figures/`."""
    skip = shutil.ignore_patterns("__pycache__", "instructor", "*.pyc")
    shutil.copytree(course.ROOT / "utils", work / "utils", ignore=skip)
    if (course.ROOT / "figures").is_dir():
        shutil.copytree(course.ROOT / "figures", work / "figures", ignore=skip)
