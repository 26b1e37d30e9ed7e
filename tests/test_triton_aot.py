"""Lesson 13's Triton kernel, proven on every GPU without one: the solution's `attention_kernel` compiled
ahead of time (`utils.gpu.compile_triton`, Triton's own compiler and `ptxas`, no GPU needed) for a T4
(sm_75), an A100 (sm_80), an A10 or RTX 30 (sm_86), an L4 or RTX 40 (sm_89) and an H100 (sm_90), in
float32, float16 and bfloat16, at every width and block the lesson launches, and each fits that GPU's
shared memory per program (`utils.gpu.SHARED_MEMORY_KIB`). Skipped, saying why, where Triton is absent.

What the compiled code shows, asserted below: from sm_80 on, `tl.dot` runs on the tensor cores
(`mma`), float32 inputs in TF32 by default, as the lesson says. A T4 (sm_75) has no bfloat16 arithmetic
at all; Triton (3.9, this course's) compiles the bfloat16 kernel for it anyway, with no `mma`
instruction: it widens the numbers to float32 and multiplies with ordinary fused multiply-adds (it does
the same for float16 on sm_75), so the kernel runs on a T4, without tensor cores."""

import inspect
import os
import re
import textwrap

import pytest
import torch

from utils import gpu

triton = pytest.importorskip("triton", reason="Triton cannot be imported here (it ships for Linux only)")

from tests.notebook_code import PRELUDE, run_source, solution  # noqa: E402  (after the skip: the cells import triton)

KERNEL = solution("13_attention_on_gpu")["attention_kernel"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def block_for(d: int) -> int:
    """The wrapper's block on a GPU: 64 for d <= 64, 32 for d = 128 (the solution's `triton_attention`)."""
    return 64 if d <= 64 else 32


def arguments(dtype: torch.dtype) -> dict:
    return dict(Q=dtype, K=dtype, V=dtype, Out=dtype, n=int, scale=float, stride_head=int, stride_row=int)


def test_the_wrapper_chooses_the_blocks_tested_here():
    """The solution's wrapper picks the blocks this file compiles with, read from its source."""
    assert "(64 if d <= 64 else 32) if Q.is_cuda" in inspect.getsource(
        solution("13_attention_on_gpu")["triton_attention"]
    )


# Every width and both masks with COURSE_AOT=all (about 90 s); by default the two widths whose blocks differ, causal.
SHAPES = (
    [(d, causal) for d in (16, 32, 64, 128) for causal in (False, True)]
    if os.environ.get("COURSE_AOT") == "all"
    else [(64, True), (128, True)]
)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(gpu.SHARED_MEMORY_KIB))
def test_the_kernel_compiles_and_fits_every_gpu(arch):
    """Every width the lesson launches (d = 16 to 128: the check; 32: the proof in float32; 64: the
    benchmark), causal or not, in the three precisions."""
    limit = gpu.SHARED_MEMORY_KIB[arch] * 1024
    jobs = [
        (arch, arguments(DTYPES[dtype]), dict(D=d, BLOCK=block_for(d), CAUSAL=causal))
        for dtype in DTYPES
        for d, causal in SHAPES
    ]
    results = gpu.compile_triton(KERNEL, jobs)
    for (dtype, (d, causal)), kernel in zip([(dtype, shape) for dtype in DTYPES for shape in SHAPES], results):
        assert kernel.arch == arch and 0 < kernel.shared <= limit, (arch, dtype, d, causal, kernel.shared)
        assert f".target sm_{arch}" in kernel.ptx
        mma = set(re.findall(r"mma\.sync\.aligned\.\S+", kernel.ptx)) | set(
            re.findall(r"wgmma\.mma_async\S*", kernel.ptx)
        )
        if arch == 75:
            assert not mma, "on a T4 Triton uses plain multiply-adds, in every precision"
        else:
            kind = {"fp32": "tf32", "fp16": "f16", "bf16": "bf16"}[dtype]
            assert mma and all(kind in instruction for instruction in mma), (arch, dtype, mma)


def test_the_fit_is_said_in_the_learners_terms():
    verdicts = gpu.triton_fit(KERNEL, (75, 90), arguments(torch.float16), dict(D=64, BLOCK=64, CAUSAL=True))
    (t4_fits, t4), (h100_fits, h100) = verdicts
    assert t4_fits and re.fullmatch(r"fits a T4 \(sm_75\): \d+ of 64 KiB of shared memory per program", t4), t4
    assert (
        h100_fits
        and h100.startswith("fits an H100 (sm_90): ")
        and h100.endswith(" of 227 KiB of shared memory per program")
    )
    without_scale = {k: v for k, v in arguments(torch.float16).items() if k != "scale"}
    with pytest.raises(ValueError, match="give an example of the kernel's argument `scale`"):
        gpu.compile_triton(KERNEL, [(80, without_scale, dict(D=64, BLOCK=64, CAUSAL=True))])


def test_a_kernel_too_big_for_a_t4_is_said_not_to_fit():
    """The verdict can fail: float32 with blocks of 128 needs more than a T4's 64 KiB."""
    ((fits, sentence),) = gpu.triton_fit(KERNEL, (75,), arguments(torch.float32), dict(D=128, BLOCK=128, CAUSAL=False))
    assert not fits and sentence.startswith("does not fit a T4 (sm_75):"), sentence


def test_a_kernel_that_does_not_compile_says_why():
    stub = solution("13_attention_on_gpu")["attention_kernel"]
    source = inspect.getsource(stub.fn).replace("block = tl.program_id(0)", "block = tl.program_id(0) + undefined_name")
    namespace = {}
    exec_source(source, namespace)
    with pytest.raises(RuntimeError, match="Triton could not compile the kernel"):
        gpu.compile_triton(
            namespace["attention_kernel"], [(80, arguments(torch.float16), dict(D=64, BLOCK=64, CAUSAL=False))]
        )


def exec_source(source: str, namespace: dict) -> None:
    exec(PRELUDE, namespace)
    run_source(textwrap.dedent(source), "broken_kernel.py", namespace)
