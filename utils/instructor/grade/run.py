"""Run one submission: the student's cells in a sandboxed kernel, the verdicts here.

`run_one` is the grader's own process for one notebook (forked, with its imports done, from the
grader's fork server by `child`; or started by `python -m utils.grade --run-one`). It starts the student's kernel (in the sandbox unless told otherwise), teaches it the
serving function of `serve.py`, and then goes exercise by exercise: the student's cell runs in
the kernel; the instructor's check cell and hidden tests run *here*, with the lesson's names bound
to `proxy.Remote`s of the student's objects. Every result is saved to a file after every step, so
the exercises judged before a crash keep their points.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import math
import os
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
    """Requests to the student's kernel, as files in the shared work folder and one line of code each."""

    def __init__(self, client, work: Path, cell_timeout: int) -> None:
        self.client, self.work, self.cell_timeout, self.number = client, work, cell_timeout, 0

    def request(self, payload: dict, timeout: float | None = None) -> dict:
        self.number += 1
        asked, answered = self.work / "request.pt", self.work / "answer.pt"
        answered.unlink(missing_ok=True)
        torch.save({**payload, "number": self.number}, asked)
        cell = new_code_cell(f"__grader_serve({str(asked)!r}, {str(answered)!r})", metadata={"grader": CALL})
        self.client.timeout = max(1, math.ceil(timeout or self.cell_timeout))
        try:
            self.client.execute_cell(cell, len(self.client.nb.cells) - 1, store_history=False)
        except DeadKernelError:
            raise proxy.KernelLost("kernel died") from None
        finally:
            self.client.timeout = self.cell_timeout
        if any(o.get("output_type") == "error" and o.get("ename") == "TimeoutError" for o in cell.outputs):
            raise proxy.RemoteTimeout
        try:
            answer = torch.load(answered, weights_only=True)
        except Exception:
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


def trusted_namespace(imports: str, needed: set[str]) -> dict:
    """The lesson's imports that the checks use, made here from the instructor's files (never the student's)."""
    namespace: dict = {"__name__": "__check__"}
    for line in imports.splitlines():
        if not names_bound(line) & needed:
            continue
        try:
            exec(compile(line, "<imports>", "exec"), namespace)
        except Exception:  # a helper that cannot load here is simply not there
            pass
    return namespace


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


def judge(source: str, label: str, base: dict, channel: KernelChannel) -> dict:
    """Run the instructor's `source` here, with the student's names it uses bound to their proxies."""
    namespace = dict(base)
    proxy.forget(channel)
    for name in sorted(names_used(source) - set(namespace) - set(dir(builtins))):
        value = proxy.lookup(channel, name)
        if value is not proxy.MISSING:
            namespace[name] = value
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


def make_client(notebook, work: Path, cell_timeout: int, max_output: int, results: dict, sandboxed: bool):
    """An nbclient client whose kernel runs in the sandbox, over files (ipc), with the output limit."""

    class Manager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            command = super().format_kernel_cmd(extra_arguments)
            return sandbox.wrap(command, work) if sandboxed else command

    class Client(NotebookClient):
        sizes: dict[int, int] = {}

        def create_kernel_manager(self):
            self.km = Manager(kernel_name="python3", transport="ipc", ip=str(work / "kernel"))
            self.km.connection_file = str(work / "kernel.json")
            self.km.kernel_spec.interrupt_mode = "message"  # a signal would stop at the sandbox's door
            return self.km

        def output(self, outs, msg, display_id, cell_index):
            if self.nb.cells[cell_index].metadata.get("grader") == CALL and msg["msg_type"] != "error":
                return None  # what the student's code prints while a check calls it
            size = len(json.dumps(msg.get("content", {})))
            self.sizes[cell_index] = self.sizes.get(cell_index, 0) + size
            if msg["msg_type"] != "error" and self.sizes[cell_index] > max_output:
                results["cells"].setdefault(str(cell_index), {})["truncated"] = True
                return None
            return super().output(outs, msg, display_id, cell_index)

    def executed(cell, cell_index, execute_reply) -> None:
        if notebook.cells[cell_index].metadata.get("grader") == CALL:
            return
        content = execute_reply.get("content", {})
        entry = results["cells"].setdefault(str(cell_index), {})
        entry.update(status=content.get("status", "error"), ename=content.get("ename", ""))
        entry["evalue"] = str(content.get("evalue", ""))[:2000]

    return Client(
        notebook,
        timeout=cell_timeout,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "TimeoutError", "evalue": f"the cell ran for more than {cell_timeout} s"},
        allow_errors=True,
        on_cell_executed=executed,
        resources={"metadata": {"path": str(work)}},
    )


def kernel_environment(work: Path) -> dict:
    """What the student's kernel sees of the environment: nothing of the grader's."""
    keep = ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    environment = {key: os.environ[key] for key in keep if key in os.environ}
    home = "/tmp/home"
    return {**environment, "HOME": home, "MPLBACKEND": "Agg", "MPLCONFIGDIR": home, "PYTHONPATH": str(work)}


def run_one(work: Path, private: Path, cell_timeout: int, max_output: int, memory_mb: int, sandboxed: bool) -> None:
    """Run the plan in `private/plan.json` on the notebook in `work`; results to `private/result.json`."""
    limit_resources(memory_mb)
    plan = json.loads((private / "plan.json").read_text())
    notebook = nbformat.read(work / plan["notebook"], as_version=4)
    results: dict = {"cells": {}, "checks": {}, "died": None}
    save = _saver(results, private / "result.json")
    client = make_client(notebook, work, cell_timeout, max_output, results, sandboxed)
    notebook.cells.append(new_code_cell(metadata={"grader": CALL}))
    save()
    try:
        with client.setup_kernel(env=kernel_environment(work)):
            _run(client, notebook, plan, results, save, work, cell_timeout)
    except proxy.KernelLost:
        results["died"] = "kernel died"
    except DeadKernelError:
        results["died"] = "kernel died"
    except Exception as error:  # the kernel failed to start, or the client broke
        results["died"] = f"{type(error).__name__}: {error}"[:500]
    save()
    notebook.cells.pop()
    nbformat.write(notebook, private / "executed.ipynb")


def child(work: Path, private: Path, limits: tuple[int, int, int], sandboxed: bool, root: str) -> None:
    """`run_one` in a process forked for one notebook (by the grader's fork server, which has the imports
    done): its own session, so that the grader can stop it and its kernel at once; its errors to a file."""
    os.setsid()
    os.chdir(private)
    os.environ.update(PYTHONPATH=root, MPLBACKEND="Agg")
    errors = os.open(private / "stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(errors, 2)
    run_one(work, private, *limits, sandboxed)


def _saver(results: dict, path: Path):
    def save() -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(results))
        os.replace(temporary, path)

    return save


def _run(client, notebook, plan: dict, results: dict, save, work: Path, cell_timeout: int) -> None:
    """The student's cells in order; after each exercise's cell, its check and hidden tests, judged here."""
    channel = KernelChannel(client, work, cell_timeout)
    serving = (Path(__file__).parent / "serve.py").read_text()
    install = new_code_cell(f"exec(compile({serving!r}, '<grader>', 'exec'))", metadata={"grader": CALL})
    client.execute_cell(install, len(notebook.cells) - 1, store_history=False)
    sources = [e[part] or "" for e in plan["exercises"] for part in ("check", "hidden")]
    base = trusted_namespace(plan["imports"], set().union(*(names_used(source) for source in sources)))
    after = {exercise["cell"]: exercise for exercise in plan["exercises"]}
    for index, cell in enumerate(notebook.cells[:-1]):
        results["cells"].setdefault(str(index), {})["started"] = True
        save()
        client.execute_cell(cell, index)
        exercise = after.get(index)
        if exercise and exercise["check"] is not None:
            verdict = results["checks"].setdefault(exercise["name"], {})
            for part in ("check", "hidden"):
                if exercise[part] is not None:
                    verdict[part] = {}
                    save()
                    verdict[part] = judge(exercise[part], f"{part}_{exercise['name']}", base, channel)
        save()
    results["patched"] = patched_names(channel)
    save()


def patched_names(channel: KernelChannel) -> list[str]:
    """What the student's code replaced (torch's comparisons, the import system, builtins), as the kernel
    reports it: a flag for the instructor; the verdicts never depended on it."""
    try:
        seen = proxy.ask(channel, {"op": "patched"}).get("value")
    except Exception:
        return ["the grader's serving function (it no longer answers)"]
    return [str(name) for name in seen] if isinstance(seen, list) else ["the grader's serving function"]
