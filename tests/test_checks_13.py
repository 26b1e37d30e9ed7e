"""Lesson 13: `check_tiled_attention`, `check_triton_attention` and `check_linear_attention`
pass right answers written several ways, never mistake a tiled implementation for the whole
matrix, and catch each classic mistake with the message the learner should read. The wrong
Triton kernels are real `@triton.jit` kernels (run by Triton's interpreter without a GPU)."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks
from utils.checks.lesson13 import FullMatrixWatch

L13 = solution("13_attention_on_gpu")
INF = float("-inf")


def test_the_solution_passes(capsys):
    checks.check_tiled_attention(L13["tiled_attention"])
    assert capsys.readouterr().out.startswith("✔ tiled_attention passes")


def over_query_blocks(key_blocks):
    """Tile the queries around a function that reads the keys in blocks for one block of queries."""

    def tiled_attention(Q, K, V, block_size, causal=False):
        outputs = []
        for row in range(0, Q.shape[-2], block_size):
            Q_block = Q[..., row : row + block_size, :]
            rows = torch.arange(row, row + Q_block.shape[-2])[:, None]
            outputs.append(key_blocks(Q_block, K, V, block_size, causal, rows))
        return torch.cat(outputs, dim=-2)

    return tiled_attention


@over_query_blocks
def blockwise_logsumexp(Q, K, V, block_size, causal, rows):
    """Right, written differently: a softmax per block, blocks merged through their log-sum-exp."""
    out = lse = None
    for first in range(0, K.shape[-2], block_size):
        K_block, V_block = K[..., first : first + block_size, :], V[..., first : first + block_size, :]
        scores = Q @ K_block.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.arange(first, first + K_block.shape[-2]) > rows, INF)
        block_lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        block_out = torch.softmax(scores, dim=-1).nan_to_num(0.0) @ V_block
        if out is None:
            out, lse = block_out, block_lse
            continue
        merged = torch.logaddexp(lse, block_lse)
        out = out * torch.exp(lse - merged) + block_out * torch.exp(block_lse - merged)
        lse = merged
    return out


@over_query_blocks
def broadcast_products(Q, K, V, block_size, causal, rows):
    """Right, written differently: scores as a broadcast product summed over d, a (..., b, b, d) block."""
    top = total = out = None
    for first in range(0, K.shape[-2], block_size):
        K_block, V_block = K[..., first : first + block_size, :], V[..., first : first + block_size, :]
        scores = (Q[..., :, None, :] * K_block[..., None, :, :]).sum(dim=-1) / Q.shape[-1] ** 0.5
        if causal:
            scores = torch.where(torch.arange(first, first + K_block.shape[-2]) <= rows, scores, INF)
        block_top = scores.amax(dim=-1, keepdim=True)
        if top is None:
            top, total, out = block_top, torch.zeros_like(block_top), torch.zeros(*Q.shape[:-1], V.shape[-1]).to(Q)
        new_top = torch.maximum(top, block_top)
        weights = torch.exp(scores - new_top)
        total = torch.exp(top - new_top) * total + weights.sum(dim=-1, keepdim=True)
        out = torch.exp(top - new_top) * out + weights @ V_block
        top = new_top
    return out / total


def preallocated(Q, K, V, block_size, causal=False):
    """Right, written differently: the output allocated once and filled block by block, future blocks skipped."""
    n, m = Q.shape[-2], K.shape[-2]
    result = torch.empty(*Q.shape[:-1], V.shape[-1], dtype=Q.dtype)
    for row in range(0, n, block_size):
        q = Q[..., row : row + block_size, :] / math.sqrt(Q.shape[-1])
        rows = torch.arange(row, row + q.shape[-2])[:, None]
        top = torch.full((*q.shape[:-1], 1), INF, dtype=Q.dtype)
        total = torch.zeros(*q.shape[:-1], 1, dtype=Q.dtype)
        acc = torch.zeros(*q.shape[:-1], V.shape[-1], dtype=Q.dtype)
        for first in range(0, m, block_size):
            if causal and first > rows.max():
                break
            scores = q @ K[..., first : first + block_size, :].transpose(-2, -1)
            if causal:
                scores = scores.masked_fill(torch.arange(first, first + scores.shape[-1]) > rows, INF)
            new_top = torch.maximum(top, scores.amax(dim=-1, keepdim=True))
            weights, correction = torch.exp(scores - new_top), torch.exp(top - new_top)
            total = correction * total + weights.sum(dim=-1, keepdim=True)
            acc = correction * acc + weights @ V[..., first : first + block_size, :]
            top = new_top
        result[..., row : row + block_size, :] = acc / total
    return result


@pytest.mark.parametrize("right", [blockwise_logsumexp, broadcast_products, preallocated])
def test_other_right_answers_pass(right):
    checks.check_tiled_attention(right)


def online(
    rescale=True,
    rescale_output=True,
    running_max=True,
    normalise=True,
    causal_mask="j > i",
    scale="sqrt d",
    blocks="all",
    accumulate=True,
    float32_sums=False,
    whole_mask=False,
    tile_queries=True,
):
    """The online softmax with one thing done wrong (or none: `online()` is right)."""
    sizes = {}

    def key_blocks(Q, K, V, block_size, causal, i):
        m = K.shape[-2]
        like = {} if float32_sums else {"dtype": Q.dtype}
        out = torch.zeros(*Q.shape[:-1], V.shape[-1], **like)
        total = torch.zeros(*Q.shape[:-1], 1, **like)
        top = torch.full((*Q.shape[:-1], 1), INF if running_max else 0.0, **like)
        allowed = torch.ones(i.max() + 1, m, dtype=torch.bool).tril()[i[:, 0]] if causal and whole_mask else None
        stops = {
            "all": range(0, m, block_size),
            "full blocks": range(0, m - block_size + 1, block_size),
            "at least one": range(0, max(1, m // block_size) * block_size, block_size),
        }
        for first in stops[blocks]:
            K_block, V_block = K[..., first : first + block_size, :], V[..., first : first + block_size, :]
            scores = Q @ K_block.transpose(-2, -1)
            j = torch.arange(first, first + K_block.shape[-2])
            shift = m - sizes["n"]  # bottom-right: the n queries are the last n of the m positions
            hidden = {"j > i": j > i, "ignored": j < 0, "j >= i": j >= i, "j < i": j < i, "bottom-right": j > i + shift}
            if causal:
                hide = ~allowed[:, first : first + block_size] if whole_mask else hidden[causal_mask]
                scores = scores.masked_fill(hide, INF)
            new_top = torch.maximum(top, scores.amax(dim=-1, keepdim=True)) if running_max else top
            correction = torch.exp(top - new_top) if rescale else torch.ones_like(top)
            weights = torch.exp(scores - new_top)
            if float32_sums:  # in place, so the float32 buffers stay float32
                total.mul_(correction).add_(weights.sum(dim=-1, keepdim=True))
                out.mul_(correction).add_(weights @ V_block)
            elif accumulate:
                total = correction * total + weights.sum(dim=-1, keepdim=True)
                out = (correction if rescale_output else 1.0) * out + weights @ V_block
            else:
                total, out = weights.sum(dim=-1, keepdim=True), weights @ V_block
            top = new_top
        return out / total if normalise else out

    def tiled_attention(Q, K, V, block_size, causal=False):
        d = Q.shape[-1]
        sizes["n"] = Q.shape[-2]
        Q = Q / {"sqrt d": math.sqrt(d), "none": 1.0, "d": d, "sqrt d_v": math.sqrt(V.shape[-1])}[scale]
        if not tile_queries:
            return key_blocks(Q, K, V, block_size, causal, torch.arange(Q.shape[-2])[:, None])
        outputs = []
        for row in range(0, Q.shape[-2], block_size):
            Q_block = Q[..., row : row + block_size, :]
            outputs.append(
                key_blocks(Q_block, K, V, block_size, causal, torch.arange(row, row + Q_block.shape[-2])[:, None])
            )
        return torch.cat(outputs, dim=-2)

    return tiled_attention


def whole_matrix(Q, K, V, block_size, causal=False):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), INF)
    return scores.softmax(dim=-1) @ V


@over_query_blocks
def per_block_softmax_nan(Q, K, V, block_size, causal, rows):
    """Blocks merged through their log-sum-exp, but a fully hidden block row is not guarded: NaN."""
    out = lse = None
    for first in range(0, K.shape[-2], block_size):
        K_block, V_block = K[..., first : first + block_size, :], V[..., first : first + block_size, :]
        scores = Q @ K_block.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        if causal:
            scores = scores.masked_fill(torch.arange(first, first + K_block.shape[-2]) > rows, INF)
        block_lse, block_out = torch.logsumexp(scores, -1, keepdim=True), torch.softmax(scores, -1) @ V_block
        if out is None:
            out, lse = block_out, block_lse
            continue
        merged = torch.logaddexp(lse, block_lse)
        out, lse = out * torch.exp(lse - merged) + block_out * torch.exp(block_lse - merged), merged
    return out


def stub(Q, K, V, block_size, causal=False):
    raise NotImplementedError("your code here")


MISTAKES = {
    "builds the whole n × m matrix": (whole_matrix, "that holds a whole n × m matrix"),
    "builds the whole n × m mask": (online(whole_mask=True), "that holds a whole n × m matrix"),
    "tiles only the keys": (online(tile_queries=False), "Tile the queries too"),
    "calls F.scaled_dot_product_attention": (
        lambda Q, K, V, block_size, causal=False: F.scaled_dot_product_attention(Q, K, V, is_causal=causal),
        "calls PyTorch's own attention",
    ),
    "returns (out, weights)": (
        lambda Q, K, V, block_size, causal=False: (online()(Q, K, V, block_size, causal), None),
        "return only `out`",
    ),
    "the stub": (stub, "not written yet"),
    "running sums not rescaled": (online(rescale=False), "rescale both the running sum ℓ and the running output o"),
    "no running maximum": (online(running_max=False), "Subtract the running maximum before the exp"),
    "not divided by ℓ": (online(normalise=False), "Divide the running output by the running sum ℓ at the end"),
    "ℓ rescaled, o not": (
        online(rescale_output=False),
        "You divide by ℓ at the end, but the running output o was not rescaled when a block raised the running "
        "maximum, while ℓ was: the running output must be rescaled by the same factor as ℓ",
    ),
    "ignores causal": (online(causal_mask="ignored"), "so it ignores `causal`"),
    "causal hides the diagonal": (online(causal_mask="j >= i"), "hides key i from query i"),
    "causal the wrong way round": (online(causal_mask="j < i"), "the wrong way round"),
    "causal aligned bottom-right (lesson 12's cache)": (
        online(causal_mask="bottom-right"),
        "your causal mask is aligned bottom-right for Q of shape (10, 8), K of shape (29, 8), V of shape (29, 6), "
        "block_size = 8, causal = True: query i sees the keys j ≤ i + m − n",
    ),
    "not scaled": (online(scale="none"), "you did not scale the scores"),
    "scaled by d": (online(scale="d"), "divide by its square root"),
    "scaled by √d_v": (online(scale="sqrt d_v"), "you scaled by √d_v"),
    "loop misses a short single block": (online(blocks="full blocks"), "does your loop reach it"),
    "drops the ragged last block": (online(blocks="at least one"), "is not a multiple of block_size"),
    "keeps only the last block": (online(accumulate=False), "attends to the last block of keys only"),
    "float32 running sums": (online(float32_sums=True), "returned torch.float32 for torch.float64 inputs"),
    "NaN from a fully hidden block": (
        per_block_softmax_nan,
        "a softmax of that block alone computes exp(−inf − (−inf))",
    ),
}


def test_the_right_online_softmax_passes():
    """The factory's default is right: each mistake below differs from it in one thing."""
    checks.check_tiled_attention(online())


@pytest.mark.parametrize("mistake", MISTAKES)
def test_check_tiled_attention_catches(mistake):
    wrong, message = MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_tiled_attention(wrong)


def test_the_watch_sees_a_whole_matrix_and_not_a_block():
    Q, K = torch.randn(2, 30, 4), torch.randn(2, 40, 4)
    watch = FullMatrixWatch(30, 40, batch=2)
    with watch:
        Q @ K[:, :8].transpose(-2, -1)  # (2, 30, 8): one block
        (Q[:, :, None, :] * K[:, None, :8, :]).sum(-1)  # (2, 30, 8, 4) on the way: still a block
    assert watch.full is None and watch.fused is None
    with watch:
        (Q @ K.transpose(-2, -1)).flatten()  # (2, 30, 40), then flattened
    assert watch.full == (2, 30, 40)
    flat = FullMatrixWatch(30, 40, batch=2)
    with flat:
        torch.einsum("bnd,bmd->bnmd", Q, K).sum(-1).reshape(-1)  # a shape that hides n and m: counted by size
    assert flat.full is not None
    square = FullMatrixWatch(30, 30, batch=2)
    with square:
        Q @ Q[:, :8].transpose(-2, -1)  # (2, 30, 8): a block
        torch.cumsum(Q[..., None] * Q[:, :, None, :], dim=1)  # (2, 30, 4, 4): running sums, no n × n
    assert square.full is None
    with square:
        Q @ Q.transpose(-2, -1)  # (2, 30, 30)
    assert square.full == (2, 30, 30)


def test_the_watch_sees_scores_for_every_query_at_once():
    Q, K = torch.randn(2, 30, 4), torch.randn(2, 40, 4)
    watch = FullMatrixWatch(30, 40, batch=2, rows=6)
    with watch:
        Q[:, :8] @ K[:, :8].transpose(-2, -1)  # (2, 8, 8): a tile
        Q * 2  # (2, 30, 4): the queries themselves
    assert watch.untiled is None and watch.full is None
    with watch:
        Q @ K[:, :8].transpose(-2, -1)  # (2, 30, 8): every query against a block of keys
    assert watch.untiled == (2, 30, 8) and watch.full is None


def test_the_check_leaves_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    checks.check_tiled_attention(L13["tiled_attention"])
    assert torch.equal(before, torch.random.get_rng_state())


# ---------------------------------------------------------------------------------------------
# check_triton_attention: wrong kernels are real @triton.jit kernels, one constexpr switch each

try:  # Triton ships for Linux only: elsewhere the Triton tests are skipped, and only they
    import triton
    import triton.language as tl
except ImportError:
    triton = None
needs_triton = pytest.mark.skipif(triton is None, reason="Triton cannot be imported here")


if triton is not None:

    @triton.jit
    def switchable_kernel(
        Q,
        K,
        V,
        Out,
        n,
        scale,
        stride_head,
        stride_row,
        D: tl.constexpr,
        BLOCK: tl.constexpr,
        CAUSAL: tl.constexpr,
        RESCALE: tl.constexpr,
        MASK_TAIL: tl.constexpr,
    ):
        """The online softmax, one program per block of queries and (batch, head); RESCALE=False never
        rescales the running sums, MASK_TAIL=False leaves the keys past n in the last block."""
        block = tl.program_id(0)
        start = tl.program_id(1) * stride_head
        rows = block * BLOCK + tl.arange(0, BLOCK)
        dims = tl.arange(0, D)
        q = tl.load(Q + start + rows[:, None] * stride_row + dims[None, :], mask=rows[:, None] < n, other=0.0)
        row_max = tl.full((BLOCK,), float("-inf"), tl.float32)
        total = tl.zeros((BLOCK,), tl.float32)
        out = tl.zeros((BLOCK, D), tl.float32)
        for first in range(0, n, BLOCK):
            keys = first + tl.arange(0, BLOCK)
            k = tl.load(K + start + keys[:, None] * stride_row + dims[None, :], mask=keys[:, None] < n, other=0.0)
            v = tl.load(V + start + keys[:, None] * stride_row + dims[None, :], mask=keys[:, None] < n, other=0.0)
            scores = tl.dot(q, tl.trans(k)) * scale
            if MASK_TAIL:
                scores = tl.where(keys[None, :] >= n, float("-inf"), scores)
            if CAUSAL:
                scores = tl.where(keys[None, :] > rows[:, None], float("-inf"), scores)
            new_max = tl.maximum(row_max, tl.max(scores, axis=1))
            correction = tl.exp(row_max - new_max)
            if not RESCALE:
                correction = tl.full((BLOCK,), 1.0, tl.float32)
            weights = tl.exp(scores - new_max[:, None])
            total = correction * total + tl.sum(weights, axis=1)
            out = correction[:, None] * out + tl.dot(weights.to(v.dtype), v)
            row_max = new_max
        out = out / total[:, None]
        tl.store(
            Out + start + rows[:, None] * stride_row + dims[None, :],
            out.to(Out.dtype.element_ty),
            mask=rows[:, None] < n,
        )


def launcher(block=16, rescale=True, mask_tail=True, honour_causal=True, scaled=True):
    """A `triton_attention` that launches `switchable_kernel` with one thing done wrong (or none)."""

    def triton_attention(Q, K, V, causal=False):
        B, h, n, d = Q.shape
        Q, K, V = Q.contiguous(), K.contiguous(), V.contiguous()
        out = torch.empty_like(Q)
        switchable_kernel[(triton.cdiv(n, block), B * h)](
            Q,
            K,
            V,
            out,
            n,
            1 / math.sqrt(d) if scaled else 1.0,
            Q.stride(1),
            Q.stride(2),
            D=d,
            BLOCK=block,
            CAUSAL=causal and honour_causal,
            RESCALE=rescale,
            MASK_TAIL=mask_tail,
        )
        return out

    return triton_attention


@needs_triton
def test_the_triton_solution_passes(capsys):
    checks.check_triton_attention(L13["triton_attention"])
    assert capsys.readouterr().out.startswith("✔ triton_attention passes")


@needs_triton
@pytest.mark.parametrize("block", [16, 32])
def test_other_right_kernels_pass(block):
    """No early stop at the diagonal, another block size: still right."""
    checks.check_triton_attention(launcher(block=block))


TRITON_MISTAKES = {
    "no rescaling": (launcher(rescale=False), "Rescale the running sum and the running output"),
    "last partial block unmasked": (launcher(mask_tail=False), "is not a multiple of your block of 16 keys"),
    "causal ignored": (launcher(honour_causal=False), "gives the same output as without it"),
    "scale forgotten": (launcher(scaled=False), "you forgot the scale"),
    "the stub": (lambda Q, K, V, causal=False: stub(Q, K, V, 16, causal), "not written yet"),
    "PyTorch instead of a kernel": (
        lambda Q, K, V, causal=False: F.scaled_dot_product_attention(Q, K, V, is_causal=causal),
        "calls PyTorch's own attention",
    ),
    "returns a pair": (lambda Q, K, V, causal=False: (launcher()(Q, K, V, causal), None), "returned a tuple"),
}


@needs_triton
@pytest.mark.parametrize("mistake", TRITON_MISTAKES)
def test_check_triton_attention_catches(mistake):
    wrong, message = TRITON_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_triton_attention(wrong)


@needs_triton
def test_without_a_gpu_the_check_asks_for_the_interpreter(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(AssertionError, match=re.escape("os.environ['TRITON_INTERPRET'] = '1'")):
        checks.check_triton_attention(launcher())


# ---------------------------------------------------------------------------------------------
# check_linear_attention


def phi(x):
    return F.elu(x) + 1


def linear(normalise=True, causal_denominator="running", honour_causal=True, feature=phi, whole_matrix=False):
    """Linear attention with one thing done wrong (or none: `linear()` is right)."""

    def linear_attention(Q, K, V, causal=False):
        causal = causal and honour_causal
        phi_q, phi_k = feature(Q), feature(K)
        if whole_matrix:
            similarity = phi_q @ phi_k.transpose(-2, -1)
            if causal:
                similarity = similarity.tril()
            return similarity @ V / similarity.sum(-1, keepdim=True)
        if causal:
            state = torch.cumsum(phi_k[..., :, :, None] * V[..., :, None, :], dim=-3)
            out = (phi_q[..., :, None, :] @ state).squeeze(-2)
            z = torch.cumsum(phi_k, dim=-2) if causal_denominator == "running" else phi_k.sum(-2, keepdim=True)
        else:
            out = phi_q @ (phi_k.transpose(-2, -1) @ V)
            z = phi_k.sum(-2, keepdim=True)
        return out / (phi_q * z).sum(-1, keepdim=True) if normalise else out

    return linear_attention


def linear_loop(Q, K, V, causal=False):
    """Right, written differently: the recurrence, one position at a time (an RNN)."""
    if not causal:
        return linear()(Q, K, V)
    state = torch.zeros(*Q.shape[:-2], Q.shape[-1], V.shape[-1], dtype=Q.dtype)
    z = torch.zeros(*Q.shape[:-2], Q.shape[-1], dtype=Q.dtype)
    outputs = []
    for i in range(Q.shape[-2]):
        state = state + phi(K[..., i, :])[..., :, None] * V[..., i, None, :]
        z = z + phi(K[..., i, :])
        q = phi(Q[..., i, :])
        outputs.append((q[..., None, :] @ state).squeeze(-2) / (q * z).sum(-1, keepdim=True))
    return torch.stack(outputs, dim=-2)


def test_the_linear_solution_passes(capsys):
    checks.check_linear_attention(L13["linear_attention"])
    assert capsys.readouterr().out.startswith("✔ linear_attention passes")


@pytest.mark.parametrize("right", [linear(), linear_loop])
def test_other_right_linear_attentions_pass(right):
    checks.check_linear_attention(right)


LINEAR_MISTAKES = {
    "no normalisation": (linear(normalise=False), "does not divide by the normaliser"),
    "causal denominator sums every key": (linear(causal_denominator="all"), "denominator sums every key"),
    "causal ignored": (linear(honour_causal=False), "gives the same output as without it"),
    "builds the n × m matrix": (linear(whole_matrix=True), "that holds a whole n × m matrix"),
    "softmax instead": (
        lambda Q, K, V, causal=False: F.scaled_dot_product_attention(Q, K, V, is_causal=causal),
        "calls PyTorch's own attention",
    ),
    "φ = exp": (linear(feature=torch.exp), "is wrong"),
    "the stub": (lambda Q, K, V, causal=False: stub(Q, K, V, 16, causal), "not written yet"),
}


@pytest.mark.parametrize("mistake", LINEAR_MISTAKES)
def test_check_linear_attention_catches(mistake):
    wrong, message = LINEAR_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_linear_attention(wrong)


def test_without_triton_the_check_says_it_did_not_run_and_grading_gives_no_point(monkeypatch, capsys):
    import sys

    from utils.checks._harness import CheckError

    for name in [name for name in sys.modules if name == "triton" or name.startswith("triton.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError, as where it is absent
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    checks.check_triton_attention(L13["triton_attention"])
    assert "Triton is not installed here (it ships for Linux only): your `triton_attention` was not checked" in (
        capsys.readouterr().out
    )
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(CheckError, match="not checked"):
        checks.check_triton_attention(L13["triton_attention"])


def test_a_triton_that_cannot_be_imported_is_skipped_too(monkeypatch, capsys):
    """Installed but broken (built for another torch, say): found on the path, yet `import triton` fails. The
    lesson's set-up then has no Triton, so the check must not call the kernel, or "Run all" would stop there."""
    import importlib

    real = importlib.import_module

    def broken(name, *args):
        if name.startswith("triton"):
            raise RuntimeError("Triton was built for another version of PyTorch")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    checks.check_triton_attention(L13["triton_attention"])
    out = capsys.readouterr().out
    assert "Triton is installed but cannot be imported (RuntimeError: Triton was built for another" in out
    assert "was not checked" in out
