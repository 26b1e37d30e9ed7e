"""Device facts and honest measurements, for lesson 13 (attention on a GPU).

- `peak_tflops(device, dtype)`: the device's dense peak from its data sheet (None on a CPU
  or a GPU not in the table), to say what fraction of the machine a kernel uses.
- `time_call(fn, device)`: the median time of `fn()`, after warm-up, synchronised (CUDA
  events on a GPU, `time.perf_counter` on a CPU).
- `peak_memory(fn, device)`: the most memory `fn()` held at once, above what was there before.
- `try_run(fn, device)` and `find_oom_length(run, lengths, device)`: run something that may
  not fit, catch the out-of-memory error, free the memory, and carry on.
- `sdpa_backends(q, k, v)`: the `F.scaled_dot_product_attention` backends that run here.
- `compile_triton(kernel, jobs)` and `triton_fit(kernel, archs, ...)`: compile a Triton kernel ahead of
  time for GPUs that are not here (a T4, an H100, ...), and say whether its shared memory fits.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Dense peaks (no sparsity) from NVIDIA's data sheets, in TFLOP/s: tensor cores for bf16 and
# fp16 (fp32 accumulation), plain fp32 (no TF32) for fp32, which is what PyTorch's matmul uses
# by default. Matched in this order against `torch.cuda.get_device_name()`, case ignored:
# the more specific names first ("H100 PCIe" before "H100", "L40S" before "L4").
PEAK_TFLOPS: tuple[tuple[str, dict[str, float | None]], ...] = (
    ("GH200", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    ("H200 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    ("H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),  # SXM: the H100's chip, more memory
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6}),
    ("L40", {"bf16": 181.0, "fp16": 181.0, "fp32": 90.5}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3}),
    ("A10G", {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "fp32": 31.2}),
    ("RTX 4090", {"bf16": 165.0, "fp16": 165.0, "fp32": 82.6}),
    ("V100-PCIE", {"bf16": None, "fp16": 112.0, "fp32": 14.0}),
    ("V100", {"bf16": None, "fp16": 125.0, "fp32": 15.7}),
    ("T4", {"bf16": None, "fp16": 65.0, "fp32": 8.1}),
)

_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def device_name(device: torch.device | str) -> str:
    """`NVIDIA H100 80GB HBM3` on a GPU, `CPU` on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def peak_tflops(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """The dense peak of `device` in `dtype`, in TFLOP/s; None on a CPU or an unknown GPU.

    `device` is a device or a GPU's name as `torch.cuda.get_device_name` gives it.
    """
    if isinstance(device, torch.device) or device in ("cpu", "cuda") or str(device).startswith("cuda:"):
        device = torch.device(device)
        if device.type != "cuda":
            return None
        device = device_name(device)
    key = _DTYPE_NAMES.get(dtype)
    if key is None:
        return None
    name = str(device).lower()
    for pattern, peaks in PEAK_TFLOPS:
        if pattern.lower() in name:
            return peaks[key]
    return None


def synchronize(device: torch.device | str) -> None:
    """Wait until the device has finished all the work queued on it (a no-op on a CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object],
    device: torch.device | str,
    *,
    warmup: int = 2,
    repeats: int = 7,
    budget: float = 2.0,
) -> float:
    """The median time of `fn()` in seconds, measured honestly.

    `warmup` calls first (kernel selection, caches, lazy initialisation), then up to `repeats`
    timed calls, each its own measurement: CUDA events recorded around the call on a GPU (a
    GPU runs asynchronously: the Python call returns before the work is done), the wall clock
    on a CPU. Stops early, after at least 3 timed calls, once `budget` seconds have been spent.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)  # elapsed_time is in milliseconds
        else:
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
        if len(times) >= 3 and sum(times) > budget:
            break
    return statistics.median(times)


class TensorMemory(TorchDispatchMode):
    """Counts the bytes of the tensors PyTorch's operators create while it is active.

    The CPU has no allocator statistics, so this watches every operator's outputs: a new
    storage adds its bytes, and when the last tensor using it is gone they come off. `peak`
    is the most held at once. Buffers a fused kernel keeps inside itself are not seen (they
    never become tensors); views and in-place results of existing tensors cost nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors using it]
        self.now = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self.live:
                self.live[key][1] += 1
            elif key in inputs or storage.nbytes() == 0:
                continue  # a view or an in-place result of memory that was already there
            else:
                self.live[key] = [storage.nbytes(), 1]
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            weakref.finalize(tensor, self._release, key)
        return out


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """The most memory, in bytes, that `fn()` held at once above what was held before.

    On a GPU: `torch.cuda.max_memory_allocated` (the allocator's own count). On a CPU: the
    bytes of the tensors `fn` creates, counted by `TensorMemory`. The result of `fn` counts
    too, as long as it is alive.
    """
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del result
        return peak
    tracker = TensorMemory()
    with tracker:
        result = fn()
    del result
    return tracker.peak


_OUT_OF_MEMORY = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says the device ran out of memory (and nothing else went wrong)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _OUT_OF_MEMORY)


def free_memory(device: torch.device | str) -> None:
    """Give back what is no longer used: collect garbage and empty PyTorch's GPU cache."""
    gc.collect()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def try_run(fn: Callable[[], object], device: torch.device | str):
    """`fn()`, or None if it ran out of memory; either way the memory it left behind is freed.

    Any other error is raised as usual. The memory is freed after the `except` block, once the
    error and its traceback (whose frames hold the half-built tensors) are gone.
    """
    out_of_memory = False
    try:
        result = fn()
    except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
        if not is_out_of_memory(error):
            raise
        out_of_memory = True
    if out_of_memory:
        free_memory(device)
        return None
    return result


def find_oom_length(
    run: Callable[[int], object], lengths: Iterable[int], device: torch.device | str
) -> tuple[int | None, int | None]:
    """Try `run(n)` for each `n` in increasing `lengths` until one runs out of memory.

    Returns `(longest that fit, first that did not)`; the second is None if all fit, the
    first None if none did. Each failure is caught and its memory freed, so the notebook goes on.
    """
    fitted = None
    for n in lengths:
        done = try_run(lambda n=n: run(n) is not None, device)  # keep no result alive
        free_memory(device)
        if done is None:
            return fitted, n
        fitted = n
    return fitted, None


def _backend_contexts() -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """name -> a context manager that restricts `F.scaled_dot_product_attention` to that backend."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        kernel = torch.backends.cuda.sdp_kernel
        return {
            "flash": lambda: kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False),
            "efficient": lambda: kernel(enable_flash=False, enable_math=False, enable_mem_efficient=True),
            "math": lambda: kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False),
        }
    contexts = {
        "flash": lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION),
        "efficient": lambda: sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION),
        "cudnn": lambda: sdpa_kernel(SDPBackend.CUDNN_ATTENTION),
        "math": lambda: sdpa_kernel(SDPBackend.MATH),
    }
    if not hasattr(SDPBackend, "CUDNN_ATTENTION"):
        del contexts["cudnn"]
    return contexts


def sdpa_backends(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, Callable]:
    """The backends of `F.scaled_dot_product_attention` that run on these inputs' device and dtype.

    Returns name -> `attention(q, k, v, is_causal=False)` restricted to that backend. A backend
    is offered when one call on `q, k, v` runs; a backend the device or dtype does not support
    raises, and is left out (the flash kernel, for example, needs a recent GPU and half precision).
    """
    offered = {}
    for name, context in _backend_contexts().items():

        def attention(q, k, v, is_causal=False, context=context):
            with context():
                return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)

        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a backend that cannot run first warns why, then raises
                attention(q, k, v)
        except RuntimeError:
            continue
        offered[name] = attention
    return offered


# --- a Triton kernel compiled for a GPU that is not here -------------------------------------

# The most shared memory one thread block (one Triton program) may use, in KiB, by compute capability
# (75 for 7.5): the opt-in maximum of NVIDIA's CUDA C++ Programming Guide, "Technical Specifications per
# Compute Capability" (the default without opting in is 48 KiB; Triton opts in).
SHARED_MEMORY_KIB = {75: 64, 80: 163, 86: 99, 89: 99, 90: 227}
GPU_NAMES = {75: "a T4", 80: "an A100", 86: "an A10 or RTX 30", 89: "an L4 or RTX 40", 90: "an H100"}
_TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int32: "i32"}


def triton_signature(arg_names: list[str], arguments: dict, constexprs: dict) -> dict[str, str]:
    """Triton's type for every argument of a kernel: a tensor or a torch dtype is a pointer to that dtype
    (`*fp16`), an int `i32`, a float `fp32`; the names in `constexprs` are `constexpr`."""
    signature = {}
    for name in arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        if name not in arguments:
            raise ValueError(f"give an example of the kernel's argument `{name}` (a dtype, `int` or `float`)")
        value = arguments[name]
        dtype = value.dtype if isinstance(value, torch.Tensor) else value
        if isinstance(dtype, torch.dtype):
            signature[name] = "*" + _TRITON_TYPES[dtype]
        elif value is int or isinstance(value, int):
            signature[name] = "i32"
        elif value is float or isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise ValueError(f"the kernel's argument `{name}`: {value!r} is not a tensor, a dtype, an int or a float")
    return signature


@dataclass(frozen=True)
class CompiledKernel:
    """What compiling a kernel for one GPU gave: its compute capability, the shared memory one program needs
    (bytes), and the PTX code Triton wrote."""

    arch: int
    shared: int
    ptx: str


_COMPILE = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, sys.argv[1])
import kernel_source
kernel = getattr(kernel_source, sys.argv[2])
results = []
for arch, signature, constexprs in json.loads(open(sys.argv[3]).read()):
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs), target=GPUTarget("cuda", arch, 32))
    results.append({"arch": arch, "shared": compiled.metadata.shared, "ptx": compiled.asm["ptx"]})
open(sys.argv[4], "w").write(json.dumps(results))
"""


def _kernel_module(kernel) -> str:
    """The source of a module that defines `kernel` as written, with the numbers it reads from its globals."""
    function = getattr(kernel, "fn", kernel)
    lines = ["import math", "import triton", "import triton.language as tl", ""]
    for name in function.__code__.co_names:
        value = function.__globals__.get(name)
        if isinstance(value, (bool, int, float)) and not isinstance(value, type):
            lines.append(f"{name} = {value!r}")
    return "\n".join(lines) + "\n\n" + textwrap.dedent(inspect.getsource(function))


def compile_triton(kernel, jobs: list[tuple[int, dict, dict]], timeout: float = 900) -> list[CompiledKernel]:
    """`kernel` (a `@triton.jit` function) compiled for NVIDIA GPUs, here, with or without a GPU: Triton ships its
    compiler and `ptxas`. Each job is `(arch, arguments, constexprs)`: the compute capability (75, 80, 86, 89, 90),
    an example of each argument (`triton_signature`) and the values of the constexprs.

    The compiler runs in a fresh Python, without `TRITON_INTERPRET`: where the lesson runs kernels in Triton's
    interpreter, the interpreter has changed `triton.language` in this process, and compiling here would not work.
    """
    name = getattr(kernel, "fn", kernel).__name__
    arg_names = list(inspect.signature(getattr(kernel, "fn", kernel)).parameters)
    table = [
        (arch, triton_signature(arg_names, arguments, constexprs), constexprs) for arch, arguments, constexprs in jobs
    ]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "kernel_source.py").write_text(_kernel_module(kernel))
        (folder / "jobs.json").write_text(json.dumps(table))
        environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
        finished = subprocess.run(
            [sys.executable, "-c", _COMPILE, str(folder), name, str(folder / "jobs.json"), str(folder / "out.json")],
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if finished.returncode != 0:
            lines = [line for line in finished.stderr.strip().splitlines() if "warn" not in line.lower()]
            raise RuntimeError("Triton could not compile the kernel:\n" + "\n".join(lines[-15:]))
        return [CompiledKernel(**result) for result in json.loads((folder / "out.json").read_text())]


def triton_fit(kernel, archs, arguments: dict, constexprs: dict) -> list[tuple[bool, str]]:
    """For each compute capability in `archs`: whether `kernel`, compiled for it, fits that GPU's shared memory,
    and a sentence that says so, "fits a T4 (sm_75): 32 of 64 KiB of shared memory per program"."""
    verdicts = []
    for compiled in compile_triton(kernel, [(arch, arguments, constexprs) for arch in archs]):
        limit = SHARED_MEMORY_KIB[compiled.arch] * 1024
        fits = compiled.shared <= limit
        verdicts.append(
            (
                fits,
                f"{'fits' if fits else 'does not fit'} {GPU_NAMES[compiled.arch]} (sm_{compiled.arch}): "
                f"{compiled.shared / 1024:g} of {limit // 1024} KiB of shared memory per program",
            )
        )
    return verdicts
