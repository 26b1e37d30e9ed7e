"""Lesson 13's helpers: device facts, honest timing, peak memory, surviving out-of-memory
errors, SDPA backends, and the training text. The GPU paths run here on a CPU with the CUDA
calls replaced by fakes, so that their logic is tested wherever the tests run."""

import weakref

import pytest
import torch
import torch.nn.functional as F

from utils import gpu, text


@pytest.mark.parametrize(
    "name, dtype, peak",
    [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989.0),
        ("NVIDIA H100 PCIe", torch.bfloat16, 756.0),
        ("NVIDIA H100 NVL", torch.float16, 835.0),
        ("NVIDIA H200", torch.bfloat16, 989.0),
        ("NVIDIA GH200 480GB", torch.bfloat16, 989.0),
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, 312.0),
        ("NVIDIA A100-PCIE-40GB", torch.float32, 19.5),
        ("NVIDIA L4", torch.bfloat16, 121.0),
        ("NVIDIA L40S", torch.bfloat16, 362.0),
        ("NVIDIA A10G", torch.bfloat16, 70.0),
        ("NVIDIA A10", torch.bfloat16, 125.0),
        ("Tesla T4", torch.float16, 65.0),
        ("Tesla T4", torch.bfloat16, None),  # no bfloat16 tensor cores
        ("Tesla V100-SXM2-16GB", torch.float16, 125.0),
        ("NVIDIA H100 80GB HBM3", torch.float64, None),
        ("Some Future GPU", torch.bfloat16, None),
    ],
)
def test_peak_tflops_reads_the_data_sheet_table(name, dtype, peak):
    assert gpu.peak_tflops(name, dtype) == peak


def test_a_cpu_has_no_peak_and_is_called_cpu():
    assert gpu.peak_tflops(torch.device("cpu")) is None
    assert gpu.peak_tflops("cpu", torch.float32) is None
    assert gpu.device_name("cpu") == "CPU"


def test_a_cuda_device_is_looked_up_by_its_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert gpu.peak_tflops(torch.device("cuda"), torch.bfloat16) == 989.0
    assert gpu.peak_tflops("cuda:0", torch.float32) == 67.0


class FakeClock:
    """A clock that moves only when the timed function says it took some time."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.durations[self.calls]
        self.calls += 1


def test_time_call_warms_up_then_takes_the_median_on_a_cpu(monkeypatch):
    clock = FakeClock([9.0, 9.0, 0.3, 0.1, 0.5, 0.2, 0.4])  # two slow warm-up calls, then five timed
    monkeypatch.setattr(gpu.time, "perf_counter", clock)
    assert gpu.time_call(clock.work, "cpu", warmup=2, repeats=5, budget=100) == pytest.approx(0.3)
    assert clock.calls == 7


def test_time_call_stops_at_its_budget_after_three_timed_calls(monkeypatch):
    clock = FakeClock([1.0] * 20)
    monkeypatch.setattr(gpu.time, "perf_counter", clock)
    assert gpu.time_call(clock.work, "cpu", warmup=1, repeats=10, budget=2.5) == pytest.approx(1.0)
    assert clock.calls == 1 + 3


def test_time_call_uses_cuda_events_and_synchronises_on_a_gpu(monkeypatch):
    clock = FakeClock([5.0, 0.002, 0.004, 0.003])
    synced = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at, self.done = None, False

        def record(self):
            self.at = clock.now

        def synchronize(self):
            self.done = True

        def elapsed_time(self, end):
            assert end.done, "read an event's time only after waiting for it"
            return (end.at - self.at) * 1000  # milliseconds, as CUDA reports

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(clock.calls))
    monkeypatch.setattr(gpu.time, "perf_counter", lambda: pytest.fail("the wall clock cannot time a GPU"))
    assert gpu.time_call(clock.work, "cuda", warmup=1, repeats=3, budget=100) == pytest.approx(0.003)
    assert synced == [1]  # after the warm-up, before the first timed call


def test_time_call_times_real_work_on_a_cpu():
    x = torch.randn(64, 64)
    seconds = gpu.time_call(lambda: x @ x, "cpu", repeats=3)
    assert 0 < seconds < 1


def test_peak_memory_counts_what_is_held_at_once_on_a_cpu():
    megabyte = 250_000  # float32 numbers in 1 MB

    def two_at_once():
        a = torch.ones(megabyte)
        b = a * 2  # a and b alive together: 2 MB
        return float(b.sum())

    def one_after_the_other():
        total = 0.0
        for _ in range(3):
            total += float(torch.ones(megabyte).sum())  # each freed before the next
        return total

    assert 2_000_000 <= gpu.peak_memory(two_at_once, "cpu") < 2_100_000
    assert 1_000_000 <= gpu.peak_memory(one_after_the_other, "cpu") < 1_100_000


def test_views_and_in_place_results_cost_nothing():
    x = torch.randn(500, 500)
    assert gpu.peak_memory(lambda: x.t()[:100], "cpu") == 0
    assert gpu.peak_memory(lambda: x[:100].view(-1).mul_(1), "cpu") == 0
    assert gpu.peak_memory(lambda: x.clone(), "cpu") == 500 * 500 * 4


def test_naive_attention_memory_grows_with_the_square_and_sdpa_does_not():
    def naive(n):
        q = torch.randn(1, 2, n, 16)
        return gpu.peak_memory(lambda: torch.softmax(q @ q.transpose(-2, -1), dim=-1) @ q, "cpu")

    def fused(n):
        q = torch.randn(1, 2, n, 16)
        return gpu.peak_memory(lambda: F.scaled_dot_product_attention(q, q, q), "cpu")

    assert 3.5 < naive(256) / naive(128) < 4.5
    assert 1.5 < fused(256) / fused(128) < 2.5


def test_peak_memory_on_a_gpu_is_the_allocator_peak_above_the_start(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1_000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 51_000)
    assert gpu.peak_memory(lambda: calls.append("run"), "cuda") == 50_000
    assert calls == ["sync", "reset", "run", "sync"]


@pytest.mark.parametrize(
    "error, out_of_memory",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 128.00 GiB"), True),
        (RuntimeError("CUDA error: out of memory"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(error, out_of_memory):
    assert gpu.is_out_of_memory(error) is out_of_memory


def test_try_run_returns_the_result_or_none_and_frees_what_the_failure_held(monkeypatch):
    freed, held = [], []
    monkeypatch.setattr(gpu, "free_memory", lambda device: freed.append(device))

    def too_big():
        half_built = torch.ones(1000)
        held.append(weakref.ref(half_built))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert gpu.try_run(lambda: 42, "cpu") == 42 and freed == []
    assert gpu.try_run(too_big, "cpu") is None
    assert freed == ["cpu"]
    assert held[0]() is None, "the failed call's tensors must be gone once try_run returns"


def test_try_run_lets_other_errors_through():
    def broken():
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        gpu.try_run(broken, "cpu")


def test_free_memory_empties_the_cuda_cache_on_a_gpu(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    gpu.free_memory("cuda")
    assert calls == ["sync", "empty"]
    gpu.free_memory("cpu")
    assert calls == ["sync", "empty"]


def fits_below(limit, tried):
    def run(n):
        tried.append(n)
        if n >= limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at n = {n}")
        return torch.zeros(1)

    return run


@pytest.mark.parametrize(
    "limit, expected, tried",
    [
        (4096, (2048, 4096), [1024, 2048, 4096]),
        (10**9, (8192, None), [1024, 2048, 4096, 8192]),
        (1, (None, 1024), [1024]),
    ],
)
def test_find_oom_length_stops_at_the_first_failure(limit, expected, tried):
    seen = []
    assert gpu.find_oom_length(fits_below(limit, seen), [1024, 2048, 4096, 8192], "cpu") == expected
    assert seen == tried


def test_sdpa_backends_offer_what_runs_and_each_equals_sdpa():
    q, k, v = torch.randn(3, 1, 2, 40, 8).unbind(0)
    backends = gpu.sdpa_backends(q, k, v)
    assert "math" in backends
    for name, attention in backends.items():
        torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v), msg=name)
        torch.testing.assert_close(
            attention(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True), msg=name
        )


def test_a_backend_that_cannot_run_is_left_out(monkeypatch):
    class Refuses:
        def __enter__(self):
            raise RuntimeError("No available kernel. Aborting execution.")

        def __exit__(self, *exc):
            return False

    contexts = gpu._backend_contexts()
    monkeypatch.setattr(gpu, "_backend_contexts", lambda: {"flash": Refuses, "math": contexts["math"]})
    assert list(gpu.sdpa_backends(*torch.randn(3, 1, 1, 4, 2).unbind(0))) == ["math"]


def test_the_training_text_is_small_verse_with_a_modest_alphabet():
    corpus = text.corpus()
    assert 10_000 < len(corpus.encode()) < 300_000
    assert len(set(corpus)) < 100
    assert all(poem.strip() and poem.endswith("\n") for poem in text.poems().values())
    assert "Tyger Tyger, burning bright," in corpus
    assert corpus == text.corpus()
