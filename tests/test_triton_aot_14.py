"""Lesson 14's Triton kernels, proven on every GPU without one: the solution's preprocessing, dK/dV and dQ
kernels and the lesson's forward kernel, compiled ahead of time by Triton's own compiler and `ptxas` (no
GPU needed: `triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))`) for a T4 (sm_75), an
A100 (sm_80), an A10 or RTX 30 (sm_86), an L4 or RTX 40 (sm_89) and an H100 (sm_90), in float32,
float16 and bfloat16, at the blocks the lesson launches on a GPU, causal or not; each must fit that GPU's
shared memory per program. (Blocks of 64 rows of float32 with d = 64 do not fit a T4: the dK/dV kernel
then needs 80 KiB. Hence the backward wrapper chooses its block by the bytes of a row.) Skipped, saying why, where Triton is absent.

The compiler runs in a fresh Python without `TRITON_INTERPRET`: where the tests run kernels in Triton's
interpreter (no GPU), that process's `triton.jit` makes interpreted functions, which cannot be compiled."""

import ast
import json
import os
import subprocess
import sys

import pytest

from tests.notebook_code import read
from utils import course

triton = pytest.importorskip("triton", reason="Triton cannot be imported here (it ships for Linux only)")

# The most shared memory one thread block (one Triton program) may use, in KiB, by compute capability:
# the opt-in maximum of NVIDIA's CUDA C++ Programming Guide, "Technical Specifications per Compute
# Capability" (Triton opts in).
SHARED_MEMORY_KIB = {75: 64, 80: 163, 86: 99, 89: 99, 90: 227}
DTYPES = ("fp32", "fp16", "bf16")
WIDTHS = (16, 32, 64, 128)
LESSON = course.SOLUTIONS / "14_training_through_the_kernel.ipynb"


BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def block_for(kernel: str, dtype: str, d: int) -> int:
    """The block the lesson's wrappers choose on a GPU: the forward one as lesson 13 (64 for d <= 64, else 32);
    the backward one by the bytes of a row (64 up to 128 bytes, 32 up to 256, 16 beyond)."""
    if kernel == "forward_kernel":
        return 64 if d <= 64 else 32
    row_bytes = d * BYTES[dtype]
    return 64 if row_bytes <= 128 else 32 if row_bytes <= 256 else 16


def kernel_cells() -> list[str]:
    """The lesson's code cells that define Triton kernels (the exercise's, the forward kernel's)."""
    return [cell.source for cell in read(LESSON).cells if cell.cell_type == "code" and "@triton.jit" in cell.source]


def signature(kernel: str, dtype: str, d: int, causal: bool, block: int | None = None) -> tuple[dict, dict]:
    """Triton's types for every argument of a kernel, and its constexprs: tensors of `dtype`; lse and D float32."""
    pointers = {"LSE": "*fp32", "Delta": "*fp32"}
    integers = {"n", "stride_head", "stride_row"}
    constexprs = {"D": d, "BLOCK": block or block_for(kernel, dtype, d), "CAUSAL": causal}
    names = {
        "preprocess_kernel": ["O", "dO", "Delta", "n", "stride_head", "stride_row", "D", "BLOCK"],
        "dkdv_kernel": ["Q", "K", "V", "dO", "LSE", "Delta", "dK", "dV", "n", "scale", "stride_head", "stride_row"],
        "dq_kernel": ["Q", "K", "V", "dO", "LSE", "Delta", "dQ", "n", "scale", "stride_head", "stride_row"],
        "forward_kernel": ["Q", "K", "V", "Out", "LSE", "n", "scale", "stride_head", "stride_row"],
    }[kernel]
    types = {}
    for name in names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name in integers:
            types[name] = "i32"
        elif name == "scale":
            types[name] = "fp32"
        else:
            types[name] = pointers.get(name, f"*{dtype}")
    if kernel != "preprocess_kernel":
        types.update(D="constexpr", BLOCK="constexpr", CAUSAL="constexpr")
    else:
        constexprs.pop("CAUSAL")
    return types, constexprs


COMPILE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import lesson14_kernels as kernels

results = []
for kernel, arch, types, constexprs in json.load(open(sys.argv[2])):
    compiled = triton.compile(
        ASTSource(fn=getattr(kernels, kernel), signature=types, constexprs=constexprs), target=GPUTarget("cuda", arch, 32)
    )
    results.append({"shared": compiled.metadata.shared, "tensor_cores": "mma" in compiled.asm["ptx"]})
print(json.dumps(results))
"""


def compile_all(tmp_path, jobs: list) -> list[dict]:
    """Compile every (kernel, arch, dtype, d, causal) of `jobs` in one fresh Python; returns what each needed."""
    module = "import math\nimport torch\nimport triton\nimport triton.language as tl\n\nHAVE_TRITON = True\n\n"
    (tmp_path / "lesson14_kernels.py").write_text(module + "\n\n".join(kernel_cells()) + "\n")
    listed = [
        (job[0], job[1], *signature(job[0], *job[2:])) for job in jobs
    ]  # (kernel, arch, dtype, d, causal[, block])
    (tmp_path / "jobs.json").write_text(json.dumps(listed))
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    environment.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, said aloud to silence its warning
    environment["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-c", COMPILE, str(tmp_path), str(tmp_path / "jobs.json")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_wrappers_choose_the_blocks_and_the_kernels_take_the_arguments_tested_here():
    """The lesson's wrappers pick the block this file compiles with, and each kernel's parameters are the ones
    `signature` types, in order: both read from the lesson's source."""
    sources = "\n".join(kernel_cells())
    assert "size = (64 if d <= 64 else 32) if Q.is_cuda else 16" in sources, "the forward wrapper, as block_for says"
    assert "row_bytes = d * Q.element_size()" in sources, "the backward wrapper, as block_for says"
    assert "(64 if row_bytes <= 128 else 32 if row_bytes <= 256 else 16) if Q.is_cuda else 16" in sources
    defined = {
        node.name: [a.arg for a in node.args.args]
        for node in ast.walk(ast.parse(sources))
        if isinstance(node, ast.FunctionDef)
    }
    for kernel in ("preprocess_kernel", "dkdv_kernel", "dq_kernel", "forward_kernel"):
        assert defined[kernel] == list(signature(kernel, "fp16", 64, True)[0]), kernel


# Every GPU with COURSE_AOT=all; by default the T4 (the least shared memory), the A100 and the H100.
ARCHS = sorted(SHARED_MEMORY_KIB) if os.environ.get("COURSE_AOT") == "all" else [75, 80, 90]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_the_kernels_compile_and_fit_every_gpu(arch, tmp_path):
    """Every kernel, every precision, the widths the lesson launches (16 to 128), causal or not."""
    jobs = [("preprocess_kernel", arch, dtype, d, False) for dtype in DTYPES for d in WIDTHS]
    jobs += [
        (kernel, arch, dtype, d, causal)
        for kernel in ("dkdv_kernel", "dq_kernel", "forward_kernel")
        for dtype in DTYPES
        for d in WIDTHS
        for causal in (False, True)
    ]
    if os.environ.get("COURSE_AOT") != "all":  # by default (seconds, not minutes): the widths and precisions whose
        # blocks and shared memory are largest; COURSE_AOT=all compiles every one the lesson launches
        chosen = {("fp32", 128), ("fp16", 64), ("bf16", 64)}
        jobs = [job for job in jobs if (job[2], job[3]) in chosen and (job[4] or job[0] == "preprocess_kernel")]
    limit = SHARED_MEMORY_KIB[arch] * 1024
    for job, result in zip(jobs, compile_all(tmp_path, jobs)):
        assert result["shared"] <= limit, (job, result["shared"], limit)
        if arch >= 80 and job[0] != "preprocess_kernel":
            assert result["tensor_cores"], job  # tl.dot on the tensor cores from the A100 on


@pytest.mark.slow
def test_the_verdict_can_fail_blocks_of_64_float32_rows_do_not_fit_a_t4(tmp_path):
    """Why the backward wrapper sizes its block by bytes: lesson 13's rule (64 for d = 64) overflows a T4."""
    (result,) = compile_all(tmp_path, [("dkdv_kernel", 75, "fp32", 64, True, 64)])
    assert result["shared"] > SHARED_MEMORY_KIB[75] * 1024
