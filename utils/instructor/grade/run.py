"""Run one submission: the student's cells in a sandboxed kernel, the verdicts here.

`run_one` is the grader's own process for one notebook (forked, with its imports done, from the
grader's fork server by `child`; or started by `python -m utils.grade --run-one`). It imports all
it will judge with before any student code runs, starts the student's kernel (in the sandbox unless
told otherwise), teaches it the serving function of `serve.py`, and runs the student's cells in
order: after each exercise's cell, the instructor's check runs *here*, with the lesson's names bound
to `proxy.Remote`s of the student's objects; after the student's last cell, the hidden tests, so
that no student code runs after the hidden tests' inputs have been seen. Requests and answers travel
as the kernel's own messages (never as files the student could redirect). Every result is saved
to a file after every step, so the exercises judged before a crash keep their points.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import importlib.abc
import io
import json
import math
import os
import sys
import types
from pathlib import Path

import nbformat
import torch
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat.v4 import new_code_cell

import utils.checks  # noqa: F401 (the instructor's checks, loaded before any student code runs)
from utils.instructor.grade import proxy, sandbox

CALL = "the grader's request"  # what a scratch cell at the end of the notebook says: nbclient runs requests there
ANSWER = "application/x-grader-answer"  # the kind of display the serving function answers with
MAX_ANSWER = 256 * 2**20  # bytes of one answer, at most


def limit_resources(memory_mb: int) -> None:
    """In this process and the kernel it starts: memory, core dumps, file sizes."""
    import resource

    limits = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 256 * 2**20)]
    if memory_mb:
        limits.append((resource.RLIMIT_AS, memory_mb * 2**20))
    for kind, value in limits:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


class KernelChannel:
    """Requests to the student's kernel as one line of code each, answers as a display of the kernel's own:
    nothing passes through a file, so there is nothing for a student to swap for a link."""

    def __init__(self, client, cell_timeout: int) -> None:
        self.client, self.cell_timeout, self.number = client, cell_timeout, 0
        self.observed: set[str] = set()  # what the trusted side saw happen: flags for the instructor
        self.timeouts = self.unanswered = 0

    def request(self, payload: dict, timeout: float | None = None) -> dict:
        self.number += 1
        buffer = io.BytesIO()
        torch.save({**payload, "number": self.number}, buffer)
        asked = base64.b64encode(buffer.getvalue()).decode("ascii")
        cell = new_code_cell(f"__grader_serve({asked!r})", metadata={"grader": CALL})
        self.client.answers, self.client.call_reply = [], None
        self.client.timeout = max(1, math.ceil(timeout or self.cell_timeout))
        try:
            self.client.execute_cell(cell, len(self.client.nb.cells) - 1, store_history=False)
        except DeadKernelError:
            raise proxy.KernelLost("kernel died") from None
        finally:
            self.client.timeout = self.cell_timeout
        replied = (getattr(self.client, "call_reply", None) or {}).get("content", {})
        timed_out = (
            replied.get("ename") == "TimeoutError" and replied.get("evalue") == self.client.error_on_timeout["evalue"]
        )
        if timed_out or any(o.get("output_type") == "error" and o.get("ename") == "TimeoutError" for o in cell.outputs):
            self.timeouts += 1
            raise proxy.RemoteTimeout
        try:
            answer = torch.load(io.BytesIO(base64.b64decode(self.client.answers[-1])), weights_only=True)
        except Exception:
            self.unanswered += 1
            raise RuntimeError(
                "the notebook's code did not answer the grader (its answer was missing or not data)"
            ) from None
        return {**answer, "number": self.number} if isinstance(answer, dict) else answer


def names_used(source: str) -> set[str]:
    """Every name a piece of code (and the code it defines) refers to."""
    try:
        stack, names = [compile(source, "<check>", "exec")], set()
    except SyntaxError:
        return set()
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


class GraderError(Exception):
    """The grader itself could not judge this notebook (never the student's doing): no verdict is made."""


def trusted_namespace(imports: str, needed: set[str]) -> dict:
    """The lesson's imports that the checks use, made here from the instructor's files (never the student's),
    before any student code runs. One that fails stops the grading of this notebook: no check runs
    without what it needs (it fails closed)."""
    namespace: dict = {"__name__": "__check__"}
    for line in imports.splitlines():
        if not names_bound(line) & needed:
            continue
        try:
            exec(compile(line, "<imports>", "exec"), namespace)
        except Exception as error:
            raise GraderError(f"the checks need `{line.strip()}`, which failed here: {error}") from None
    torch.testing.assert_close(torch.zeros(1), torch.zeros(1))  # its first call imports more of torch
    return namespace


class TrustedImports(importlib.abc.MetaPathFinder):
    """Once student code has run, a module this process has not imported yet may come only from the
    folders it was started with (the interpreter, its packages, the course): never from anywhere a
    student can write. Anything else is refused, and the check that wanted it fails closed."""

    def __init__(self, allowed: list[str]) -> None:
        self.allowed = [str(Path(p).resolve()) for p in allowed if p]

    def find_spec(self, name, path=None, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            origin = spec.origin if spec.has_location else None
            if origin and not any(str(Path(origin).resolve()).startswith(p + "/") for p in self.allowed):
                raise ImportError(f"the grader refuses to import {name} from {origin}, outside its own folders")
            return spec
        return None


def guard_imports(work: Path) -> None:
    """From now on, import only from the folders this process started with, and never from `work`."""
    allowed = [p for p in sys.path if p and Path(p).is_dir()]
    work_path = str(work.resolve())
    allowed = [p for p in allowed if not str(Path(p).resolve()).startswith(work_path)]
    sys.path[:] = [p for p in sys.path if p and not str(Path(p).resolve()).startswith(work_path)]
    sys.meta_path.insert(0, TrustedImports(allowed))


def names_bound(statement: str) -> set[str]:
    """The names an import statement binds."""
    import ast

    try:
        node = ast.parse(statement).body[0]
    except (SyntaxError, IndexError):
        return set()
    if not isinstance(node, (ast.Import, ast.ImportFrom)):
        return set()
    return {(alias.asname or alias.name).split(".")[0] for alias in node.names}


def judge(source: str, label: str, base: dict, channel: KernelChannel, exercise: str = "") -> dict:
    """Run the instructor's `source` here, with the student's names it uses bound to their proxies."""
    namespace = dict(base)
    proxy.forget(channel)
    for name in sorted(names_used(source) - set(namespace) - set(dir(builtins))):
        value = proxy.lookup(channel, name)
        if value is not proxy.MISSING:
            namespace[name] = value
        elif name == exercise:
            channel.observed.add(f"`{name}` was not defined when its check ran")
    printed = io.StringIO()
    entry: dict = {"status": "ok"}
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(source, label, "exec"), namespace)
    except proxy.KernelLost:
        raise
    except BaseException as error:  # the verdict: a check that failed, or anything that stopped it
        entry = {"status": "error", "ename": type(error).__name__, "evalue": str(error)[:2000]}
    entry["output"] = printed.getvalue()[-5000:]
    return entry


REFUSED = proxy.REFUSED


def make_client(notebook, work: Path, cell_timeout: int, max_output: int, results: dict, sandboxed: bool):
    """An nbclient client whose kernel runs in the sandbox, over sockets in `work/ipc`, with the output limit
    on every kind of output (streams, displays and their updates, errors, widgets' messages)."""

    class Manager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            command = super().format_kernel_cmd(extra_arguments)
            if not sandboxed:
                return command
            os.chmod(
                self.connection_file, 0o644
            )  # the student's user must read it: its key signs the kernel's messages
            return sandbox.wrap(command, work)

    class Client(NotebookClient):
        def create_kernel_manager(self):
            self.sizes: dict[int, int] = {}
            self.total, self.answers = 0, []
            (work / "ipc").mkdir(exist_ok=True)
            self.km = Manager(kernel_name="python3", transport="ipc", ip=str(work / "ipc" / "kernel"))
            self.km.connection_file = str(work / "kernel.json")
            self.km.kernel_spec.interrupt_mode = "message"  # a signal would stop at the sandbox's door
            return self.km

        def process_message(self, msg, cell, cell_index):
            kind, content = msg.get("msg_type"), msg.get("content") or {}
            if kind in ("status", "execute_input"):
                return super().process_message(msg, cell, cell_index)
            if kind == "error":  # an error's name, message and traceback, each cut to a readable length
                content["ename"] = str(content.get("ename", ""))[:200]
                content["evalue"] = str(content.get("evalue", ""))[:2000]
                content["traceback"] = [str(line)[:2000] for line in list(content.get("traceback") or [])[:40]]
            if cell.metadata.get("grader") == CALL:
                data = content.get("data") or {}
                if kind == "display_data" and isinstance(data.get(ANSWER), str) and len(data[ANSWER]) <= MAX_ANSWER:
                    self.answers.append(data[ANSWER])
                return super().process_message(msg, cell, cell_index) if kind == "error" else None
            size = len(json.dumps(content))
            self.sizes[cell_index] = self.sizes.get(cell_index, 0) + size
            self.total += size
            if self.sizes[cell_index] > max_output or self.total > 4 * max_output:
                results["cells"].setdefault(str(cell_index), {})["truncated"] = True
                if kind != "error" or self.sizes[cell_index] > max_output + 100_000:
                    return None
            return super().process_message(msg, cell, cell_index)

    def executed(cell, cell_index, execute_reply) -> None:
        if cell.metadata.get("grader") == CALL:
            client.call_reply = execute_reply
            return
        content = execute_reply.get("content", {})
        entry = results["cells"].setdefault(str(cell_index), {})
        entry.update(status=content.get("status", "error"), ename=str(content.get("ename", ""))[:200])
        entry["evalue"] = str(content.get("evalue", ""))[:2000]
        if entry["status"] == "error" and any(words in entry["evalue"] for words in REFUSED):
            said = report_line(f"{entry['ename']}: {entry['evalue']}")
            results.setdefault("observed", []).append(f"the sandbox refused what a cell tried ({said})")

    client = Client(
        notebook,
        timeout=cell_timeout,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "TimeoutError", "evalue": f"the cell ran for more than {cell_timeout} s"},
        allow_errors=True,
        on_cell_executed=executed,
        resources={"metadata": {"path": str(work)}},
    )
    return client


def report_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:160]


def kernel_environment(work: Path) -> dict:
    """What the student's kernel sees of the environment: nothing of the grader's."""
    keep = ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    environment = {key: os.environ[key] for key in keep if key in os.environ}
    home = "/tmp/home"
    return {
        **environment,
        "HOME": home,
        "USER": "student",
        "LOGNAME": "student",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": home,
        "PYTHONPATH": str(work),
    }


def run_one(work: Path, private: Path, cell_timeout: int, max_output: int, memory_mb: int, sandboxed: bool) -> None:
    """Run the plan in `private/plan.json` on the notebook there; results to `private/result.json`."""
    limit_resources(memory_mb)
    plan = json.loads((private / "plan.json").read_text())
    notebook = nbformat.read(private / plan["notebook"], as_version=4)
    results: dict = {"cells": {}, "checks": {}, "died": None, "observed": []}
    save = _saver(results, private / "result.json")
    sources = [e[part] or "" for e in plan["exercises"] for part in ("check", "hidden")]
    try:  # everything the checks need, imported before the student's code exists
        base = trusted_namespace(plan["imports"], set().union(*(names_used(source) for source in sources)))
    except GraderError as error:
        results["grader_error"] = str(error)
        save()
        return
    guard_imports(work)
    notebook.cells.append(new_code_cell(metadata={"grader": CALL}))
    limits = (cell_timeout, max_output, sandboxed)
    save()
    results["died"] = _session(
        notebook, work, private, results, limits, lambda c: _run(c, notebook, plan, results, save, base)
    )
    save()
    if results["died"]:
        _hidden_again(notebook, plan, results, save, base, work, private, limits)
        save()
    notebook.cells.pop()
    nbformat.write(notebook, private / "executed.ipynb")


def _session(notebook, work: Path, private: Path, results: dict, limits: tuple, body) -> str | None:
    """Start the student's kernel (in its sandbox) for `notebook`, run `body(client)`, and say how it ended:
    None when well, else why it stopped."""
    cell_timeout, max_output, sandboxed = limits
    client = make_client(notebook, work, cell_timeout, max_output, results, sandboxed)
    if sandboxed:
        sandbox.prepare(work)
    try:
        with client.setup_kernel(env=kernel_environment(work)):
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            if process is not None:  # for the grader, which kills the whole sandbox when time is up
                (private / "kernel.pid").write_text(str(process.pid))
            if sandboxed:
                sandbox.close_sockets(work)
            body(client)
    except (proxy.KernelLost, DeadKernelError):
        return "kernel died"
    except proxy.RemoteTimeout:
        return "time-out: the notebook's code never stopped running (not even when interrupted)"
    except Exception as error:  # the kernel failed to start, or the client broke
        return f"{type(error).__name__}: {error}"[:500]
    return None


def _hidden_again(notebook, plan: dict, results: dict, save, base: dict, work: Path, private: Path, limits) -> None:
    """The notebook stopped (a crash, a time-out) after some exercises passed their checks but before the hidden
    tests, which run last: run those in a fresh kernel that runs the student's cells up to the one that was
    running, so that the exercises judged before the failure keep their points."""
    cells = results["cells"]
    running = [int(i) for i, entry in cells.items() if entry.get("started") and "status" not in entry]
    stuck = min(running) if running else len(notebook.cells) - 1
    checks = results["checks"]
    pending = [
        e
        for e in plan["exercises"]
        if e["hidden"] is not None
        and e["cell"] is not None
        and e["cell"] < stuck
        and checks.get(e["name"], {}).get("check", {}).get("status") == "ok"
        and not checks[e["name"]].get("hidden")
    ]
    if not pending:
        return
    again = nbformat.v4.new_notebook(
        cells=[copy.deepcopy(c) for c in notebook.cells[:stuck]], metadata=notebook.metadata
    )
    again.cells.append(new_code_cell(metadata={"grader": CALL}))

    def body(client) -> None:
        channel = _install(client, again)
        for index, cell in enumerate(again.cells[:-1]):
            client.execute_cell(cell, index)
        for exercise in pending:
            checks[exercise["name"]]["hidden"] = {}
            save()
            checks[exercise["name"]]["hidden"] = _judged(exercise, "hidden", base, channel)
            save()

    _session(again, work, private, {"cells": {}, "checks": {}}, limits, body)


def child(work: Path, private: Path, limits: tuple[int, int, int], sandboxed: bool, root: str) -> None:
    """`run_one` in a process forked for one notebook (by the grader's fork server, which has the imports
    done): its own session, so that the grader can stop it at once; its output to files, so that nothing
    it starts (the student's kernel least of all) holds the grader's own output open."""
    os.setsid()
    os.chdir(private)
    os.environ.update(PYTHONPATH=root, MPLBACKEND="Agg")
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    for stream, name in ((1, "stdout.txt"), (2, "stderr.txt")):
        opened = os.open(private / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.dup2(opened, stream)
    run_one(work, private, *limits, sandboxed)


def _saver(results: dict, path: Path):
    def save() -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(results))
        os.replace(temporary, path)

    return save


def _install(client, notebook) -> KernelChannel:
    """Teach the student's kernel the serving function; the channel to it."""
    serving = (Path(__file__).parent / "serve.py").read_text()
    install = new_code_cell(f"exec(compile({serving!r}, '<grader>', 'exec'))", metadata={"grader": CALL})
    client.execute_cell(install, len(notebook.cells) - 1, store_history=False)
    return KernelChannel(client, client.timeout)


def _run(client, notebook, plan: dict, results: dict, save, base: dict) -> None:
    """The student's cells in order, each exercise's check after its cell; then, after the last cell, the
    hidden tests; every verdict judged here."""
    channel = _install(client, notebook)
    after = {exercise["cell"]: exercise for exercise in plan["exercises"]}
    try:
        for index, cell in enumerate(notebook.cells[:-1]):
            results["cells"].setdefault(str(index), {})["started"] = True
            save()
            client.execute_cell(cell, index)
            exercise = after.get(index)
            if exercise and exercise["check"] is not None:
                verdict = results["checks"].setdefault(exercise["name"], {})
                verdict["check"] = {}
                save()
                verdict["check"] = _judged(exercise, "check", base, channel)
            save()
        for exercise in plan["exercises"]:  # after the student's last cell: no student cell sees these inputs
            if exercise["check"] is not None and exercise["hidden"] is not None:
                verdict = results["checks"].setdefault(exercise["name"], {})
                verdict["hidden"] = {}
                save()
                verdict["hidden"] = _judged(exercise, "hidden", base, channel)
                save()
        results["patched"] = patched_names(channel)
    finally:
        results["observed"] = sorted(set(results.get("observed", [])) | channel.observed)
        save()


def _judged(exercise: dict, part: str, base: dict, channel: KernelChannel) -> dict:
    timeouts, unanswered = channel.timeouts, channel.unanswered
    try:
        return judge(exercise[part], f"{part}_{exercise['name']}", base, channel, exercise["name"])
    finally:
        if channel.timeouts > timeouts:
            channel.observed.add(f"a call of `{exercise['name']}` ran out of time")
        if channel.unanswered > unanswered:
            channel.observed.add("the grader's serving function stopped answering (it was replaced or broken)")


def patched_names(channel: KernelChannel) -> list[str]:
    """What the student's code replaced (torch's comparisons, the import system, builtins, the checks), as the
    kernel reports it: a flag for the instructor; the verdicts never depended on it."""
    try:
        seen = proxy.ask(channel, {"op": "patched"}).get("value")
    except Exception:
        channel.observed.add("the grader's serving function stopped answering (it was replaced or broken)")
        return []
    return [str(name) for name in seen] if isinstance(seen, list) else []
