"""Lesson 14: `check_attention_backward`, `check_flash_attention` and `check_triton_attention_backward`
pass right answers written several ways and catch each classic mistake with the message the learner
should read. The wrong Triton kernels are real `@triton.jit` kernels (run by Triton's interpreter
without a GPU)."""

import math
import re
import types

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks
from utils.checks import lesson14

L14 = solution("14_training_through_the_kernel")
tiled_forward = L14["tiled_forward"]
INF = float("-inf")


def test_the_solutions_pass(capsys):
    checks.check_attention_backward(L14["attention_backward"])
    checks.check_flash_attention(L14["FlashAttention"])
    out = capsys.readouterr().out
    assert out.startswith("✔ attention_backward passes") and "✔ FlashAttention passes" in out


# ---------------------------------------------------------------------------------------------
# attention_backward: one switch per mistake


def tiled_backward(
    D_from="dO ∘ O",
    minus_D=True,
    subtract_lse=True,
    rescore=True,
    scale_dQ=True,
    scale_dK=True,
    scale_dV=False,
    mask="-inf",
    skip_upper=True,
    lse_rows="query block",
    lse_axis=True,
    D_axis=True,
    transpose_P=True,
    tile_queries=True,
    like_inputs=True,
    exp_ratio=False,
    order="dQ, dK, dV",
):
    """The tiled backward pass, keys outside, with one thing done wrong (or none: `tiled_backward()` is right)."""

    def attention_backward(Q, K, V, O, dO, lse, block_size, causal=False):
        n, m, d = Q.shape[-2], K.shape[-2], Q.shape[-1]
        scale = 1 / math.sqrt(d)
        D = {"dO ∘ O": (dO * O).sum(-1), "dO": dO.sum(-1)}.get(D_from)
        dQ = torch.zeros_like(Q) if like_inputs else torch.zeros(Q.shape)
        dK, dV = [], []
        b_q = block_size if tile_queries else n
        for first in range(0, m, block_size):
            K_j, V_j = K[..., first : first + block_size, :], V[..., first : first + block_size, :]
            keys = torch.arange(first, first + K_j.shape[-2])
            dK_j, dV_j = torch.zeros_like(K_j), torch.zeros_like(V_j)
            for row in range(first if causal and skip_upper and tile_queries else 0, n, b_q):
                Q_i, dO_i = Q[..., row : row + b_q, :], dO[..., row : row + b_q, :]
                rows = torch.arange(row, row + Q_i.shape[-2])[:, None]
                S = Q_i @ K_j.transpose(-2, -1) * (scale if rescore else 1.0)
                if causal and mask == "-inf":
                    S = S.masked_fill(keys > rows, INF)
                where = slice(row, row + b_q) if lse_rows == "query block" else slice(first, first + block_size)
                L = lse[..., where, None] if lse_axis else lse[..., where][..., None, :]
                if lse_rows == "the block's own":
                    L = torch.logsumexp(S, dim=-1, keepdim=True)
                if not subtract_lse:
                    P = torch.exp(S)
                elif exp_ratio:
                    P = torch.exp(S) / torch.exp(L)
                else:
                    P = torch.exp(S - L)
                dV_j = dV_j + (P.transpose(-2, -1) if transpose_P else P) @ dO_i * (scale if scale_dV else 1.0)
                dP = dO_i @ V_j.transpose(-2, -1)
                if D_from == "this block's P ∘ dP":
                    D_i = (P * dP).sum(-1, keepdim=True)
                else:
                    D_i = D[..., row : row + b_q, None] if D_axis else D[..., row : row + b_q][..., None, :]
                dS = P * (dP - D_i) if minus_D else P * dP
                dQ[..., row : row + b_q, :] += dS @ K_j * (scale if scale_dQ else 1.0)
                dK_j = dK_j + dS.transpose(-2, -1) @ Q_i * (scale if scale_dK else 1.0)
            dK.append(dK_j)
            dV.append(dV_j)
        grads = {"dQ": dQ, "dK": torch.cat(dK, dim=-2), "dV": torch.cat(dV, dim=-2)}
        return tuple(grads[name] for name in order.split(", "))

    return attention_backward


def queries_outside(Q, K, V, O, dO, lse, block_size, causal=False):
    """Right, written differently: the queries outside (the order of the forward pass), dK and dV allocated once."""
    n, m = Q.shape[-2], K.shape[-2]
    scale = 1 / math.sqrt(Q.shape[-1])
    D = (dO * O).sum(-1, keepdim=True)
    dQ, dK, dV = torch.zeros_like(Q), torch.zeros_like(K), torch.zeros_like(V)
    for row in range(0, n, block_size):
        Q_i, dO_i, L_i, D_i = (x[..., row : row + block_size, :] for x in (Q, dO, lse[..., None], D))
        rows = torch.arange(row, row + Q_i.shape[-2])[:, None]
        for first in range(0, m, block_size):
            if causal and first > rows[-1, 0]:
                break
            K_j, V_j = K[..., first : first + block_size, :], V[..., first : first + block_size, :]
            S = torch.einsum("...id,...jd->...ij", Q_i, K_j) * scale
            if causal:
                S = torch.where(torch.arange(first, first + K_j.shape[-2]) <= rows, S, INF)
            P = torch.exp(S - L_i)
            dV[..., first : first + block_size, :] += P.transpose(-2, -1) @ dO_i
            dS = P * (dO_i @ V_j.transpose(-2, -1) - D_i)
            dQ[..., row : row + block_size, :] += dS @ K_j * scale
            dK[..., first : first + block_size, :] += dS.transpose(-2, -1) @ Q_i * scale
    return dQ, dK, dV


def D_from_the_whole_row(Q, K, V, O, dO, lse, block_size, causal=False):
    """Right, written differently: D = rowsum(P ∘ dP), summed over every block of keys in a first pass
    (equal to rowsum(dO ∘ O), as the lesson derives), then the gradients in a second."""
    n, m = Q.shape[-2], K.shape[-2]
    scale = 1 / math.sqrt(Q.shape[-1])

    def tiles():
        for first in range(0, m, block_size):
            for row in range(0, n, block_size):
                S = Q[..., row : row + block_size, :] @ K[..., first : first + block_size, :].transpose(-2, -1) * scale
                if causal:
                    hidden = torch.arange(first, first + S.shape[-1]) > torch.arange(row, row + S.shape[-2])[:, None]
                    S = S.masked_fill(hidden, INF)
                P = torch.exp(S - lse[..., row : row + block_size, None])
                dP = dO[..., row : row + block_size, :] @ V[..., first : first + block_size, :].transpose(-2, -1)
                yield row, first, P, dP

    D = torch.zeros_like(lse)
    for row, _, P, dP in tiles():
        D[..., row : row + block_size] += (P * dP).sum(-1)
    dQ, dK, dV = torch.zeros_like(Q), torch.zeros_like(K), torch.zeros_like(V)
    for row, first, P, dP in tiles():
        dS = P * (dP - D[..., row : row + block_size, None])
        dV[..., first : first + block_size, :] += P.transpose(-2, -1) @ dO[..., row : row + block_size, :]
        dQ[..., row : row + block_size, :] += dS @ K[..., first : first + block_size, :] * scale
        dK[..., first : first + block_size, :] += dS.transpose(-2, -1) @ Q[..., row : row + block_size, :] * scale
    return dQ, dK, dV


@pytest.mark.parametrize("right", [tiled_backward(), queries_outside, D_from_the_whole_row])
def test_other_right_backward_passes_pass(right):
    checks.check_attention_backward(right)


def whole_matrix(Q, K, V, O, dO, lse, block_size, causal=False):
    leaves = [x.detach().clone().requires_grad_() for x in (Q, K, V)]
    scores = leaves[0] @ leaves[1].transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        scores = scores.masked_fill(torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1), INF)
    return torch.autograd.grad(scores.softmax(-1) @ leaves[2], leaves, dO)


def through_sdpa(Q, K, V, O, dO, lse, block_size, causal=False):
    leaves = [x.detach().clone().requires_grad_() for x in (Q, K, V)]
    return torch.autograd.grad(F.scaled_dot_product_attention(*leaves, is_causal=causal), leaves, dO)


def dQ_as_a_list(Q, K, V, O, dO, lse, block_size, causal=False):
    dQ, dK, dV = tiled_backward()(Q, K, V, O, dO, lse, block_size, causal)
    return list(dQ.split(block_size, dim=-2)), dK, dV


def stub(*args, **kwargs):
    raise NotImplementedError("your code here")


def crashes(Q, K, V, O, dO, lse, block_size, causal=False):
    return Q @ K  # (n, d) @ (m, d): the shapes do not fit


def spins(Q, K, V, O, dO, lse, block_size, causal=False):
    while True:
        pass


MISTAKES = {
    "D = rowsum(dO), O forgotten": (tiled_backward(D_from="dO"), "your D is the row sums of dO alone"),
    "D from one block's P ∘ dP": (
        tiled_backward(D_from="this block's P ∘ dP"),
        "you computed D from the weights of one block of keys at a time",
    ),
    "dS without − D": (tiled_backward(minus_D=False), "without the − D term"),
    "exp(S), lse not subtracted": (tiled_backward(subtract_lse=False), "your weights are exp(S), not exp(S − lse)"),
    "scores recomputed without the scale": (tiled_backward(rescore=False), "recomputed the scores without the scale"),
    "1/√d forgotten on dQ": (tiled_backward(scale_dQ=False), "you forgot the 1/√d on dQ"),
    "1/√d forgotten on dK": (tiled_backward(scale_dK=False), "you forgot the 1/√d on dK"),
    "1/√d forgotten on both": (tiled_backward(scale_dQ=False, scale_dK=False), "you forgot the 1/√d on both"),
    "dV scaled by 1/√d": (tiled_backward(scale_dV=True), "your dV is divided by √d"),
    "causal mask missing in the backward pass": (
        tiled_backward(mask="none", skip_upper=False),
        "your backward pass does not apply the mask",
    ),
    "causal: upper tiles skipped, diagonal tiles unmasked": (
        tiled_backward(mask="none"),
        "does not mask inside the blocks on it",
    ),
    "lse of the block itself (a softmax per tile)": (
        tiled_backward(lse_rows="the block's own"),
        "you normalised a block by its own log-sum-exp",
    ),
    "lse of the key block's rows": (tiled_backward(lse_rows="key block"), "you took the lse of the wrong block"),
    "lse broadcast along the keys": (tiled_backward(lse_axis=False), "you subtracted lse along the wrong axis"),
    "D broadcast along the keys": (tiled_backward(D_axis=False), "you subtracted D along the wrong axis"),
    "dV = P dO, P not transposed": (tiled_backward(transpose_P=False), "without transposing it"),
    "exp(S) / exp(lse) overflows": (tiled_backward(exp_ratio=True), "never exp(S) / exp(lse)"),
    "float32 accumulator": (tiled_backward(like_inputs=False), "returned dQ as torch.float32 for torch.float64 inputs"),
    "returns (dQ, dV, dK)": (tiled_backward(order="dQ, dV, dK"), "returned (dQ, dV, dK)"),
    "returns two gradients": (tiled_backward(order="dQ, dK"), "it should return the three gradients"),
    "dQ a list of blocks": (dQ_as_a_list, "returned a list as its dQ"),
    "builds the whole n × m matrix": (whole_matrix, "that holds a whole n × m matrix"),
    "tiles only the keys": (tiled_backward(tile_queries=False), "Take the queries `block_size` at a time too"),
    "autograd through SDPA": (through_sdpa, "calls PyTorch's own attention"),
    "the stub": (stub, "not written yet"),
    "crashes": (crashes, "raised RuntimeError"),
}


def test_the_right_factory_passes():
    """The factory's default is right: each mistake below differs from it in one thing."""
    checks.check_attention_backward(tiled_backward())


@pytest.mark.parametrize("mistake", MISTAKES)
def test_check_attention_backward_catches(mistake):
    wrong, message = MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_attention_backward(wrong)


def test_a_hanging_backward_pass_is_stopped(monkeypatch):
    monkeypatch.setattr(lesson14, "TIME_LIMIT", 0.3)
    with pytest.raises(AssertionError, match="is there an endless loop"):
        checks.check_attention_backward(spins)


def test_the_mathematically_equal_D_is_not_a_mistake():
    """D from rowsum(P ∘ dP) over whole rows equals rowsum(dO ∘ O): no suspect may claim it is wrong."""
    problem = lesson14.Problem(torch.Generator().manual_seed(0), (2,), 24, 40, 8, 6, True)
    assert torch.allclose((problem.P * problem.dP).sum(-1), problem.D)
    for grads, message in lesson14._suspects(problem, (8,)):
        assert not lesson14._matches(grads, problem.expected, lesson14.TIGHT), message


def test_the_check_leaves_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    checks.check_attention_backward(L14["attention_backward"])
    assert torch.equal(before, torch.random.get_rng_state())


# ---------------------------------------------------------------------------------------------
# FlashAttention: each wrong class differs from the right one in one thing

attention_backward = L14["attention_backward"]  # the name the classes below call, as a notebook's would
BLOCK = 16


def flash(
    returns_lse=False,
    keeps_causal=True,
    gradients="dQ, dK, dV, None",
    keeps_tiles=False,
    short_sequences_wrong=False,
):
    """A FlashAttention with one thing done wrong (or none)."""

    class FlashAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, Q, K, V, causal=False):
            out, lse = tiled_forward(Q, K, V, BLOCK, causal)
            extra = []
            if keeps_tiles:  # every tile's weights, kept "to save recomputing them"
                for row in range(0, Q.shape[-2], BLOCK):
                    for first in range(0, K.shape[-2], BLOCK):
                        S = Q[..., row : row + BLOCK, :] @ K[..., first : first + BLOCK, :].transpose(-2, -1)
                        extra.append(torch.exp(S / math.sqrt(Q.shape[-1]) - lse[..., row : row + BLOCK, None]))
            ctx.save_for_backward(Q, K, V, out, lse, *extra)
            ctx.causal = causal if keeps_causal else False
            return (out, lse) if returns_lse else out

        @staticmethod
        def backward(ctx, dO, *ignored):
            Q, K, V, out, lse = ctx.saved_tensors[:5]
            dQ, dK, dV = attention_backward(Q, K, V, out, dO, lse, BLOCK, ctx.causal)
            if short_sequences_wrong and Q.shape[-2] < 8:
                dQ = dQ * 1.5
            grads = {"dQ": dQ, "dK": dK, "dV": dV, "None": None}
            return tuple(grads[name] for name in gradients.split(", ")) + ((None,) if returns_lse else ())

    return FlashAttention


class AutogradAgain(torch.autograd.Function):
    """Right numbers, but a backward pass that never calls `attention_backward`: autograd through SDPA again."""

    @staticmethod
    def forward(ctx, Q, K, V, causal=False):
        out, lse = tiled_forward(Q, K, V, BLOCK, causal)
        ctx.save_for_backward(Q, K, V)
        ctx.causal = causal
        return out

    @staticmethod
    def backward(ctx, dO):
        with torch.enable_grad():
            return (*through_sdpa(*ctx.saved_tensors, None, dO, None, BLOCK, ctx.causal), None)


def test_the_right_flash_attention_passes():
    checks.check_flash_attention(flash())


class NotAFunction:
    @staticmethod
    def forward(ctx, Q, K, V, causal=False):
        return tiled_forward(Q, K, V, BLOCK, causal)[0]


class StubFlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Q, K, V, causal=False):
        raise NotImplementedError("your code here")

    @staticmethod
    def backward(ctx, dO):
        raise NotImplementedError("your code here")


def wrong_earlier(Q, K, V, O, dO, lse, block_size, causal=False):
    return tiled_backward(scale_dK=False)(Q, K, V, O, dO, lse, block_size, causal)


def flash_calling(backward_pass):
    """A right FlashAttention whose functions see `backward_pass` as the global `attention_backward`, as a
    notebook with that function would."""
    cls, names = flash(), {**globals(), "attention_backward": backward_pass}
    for name in ("forward", "backward"):
        f = vars(cls)[name].__func__
        setattr(
            cls, name, staticmethod(types.FunctionType(f.__code__, names, f.__name__, f.__defaults__, f.__closure__))
        )
    return cls


FLASH_MISTAKES = {
    "the stub": (StubFlashAttention, "not written yet"),
    "not a torch.autograd.Function": (NotAFunction, "has no `apply`"),
    "forward returns (out, lse)": (flash(returns_lse=True), "`forward` must return only `out`"),
    "backward returns three gradients": (flash(gradients="dQ, dK, dV"), "returned the wrong number of gradients"),
    "causal not kept for the backward pass": (flash(keeps_causal=False), "leaves out the mask"),
    "gradients in the wrong order": (flash(gradients="dQ, dV, dK, None"), "returns (dQ, dV, dK)"),
    "keeps every tile's weights": (flash(keeps_tiles=True), "keeps"),
    "backward does not call attention_backward": (AutogradAgain, "does not call your `attention_backward`"),
    "its attention_backward is wrong": (flash_calling(wrong_earlier), "fix it first (exercise 1)"),
    "right only for the lengths the values stage tries": (
        flash(short_sequences_wrong=True),
        "torch.autograd.gradcheck fails",
    ),
}


@pytest.mark.parametrize("mistake", FLASH_MISTAKES)
def test_check_flash_attention_catches(mistake):
    wrong, message = FLASH_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_flash_attention(wrong)


def test_the_memory_message_names_the_bytes_and_the_largest_tensor():
    with pytest.raises(AssertionError) as error:
        checks.check_flash_attention(flash(keeps_tiles=True))
    assert re.search(r"keeps \d+ KiB for the backward pass .* in \d+ tensors \(the largest of shape", str(error.value))


def test_saved_for_backward_counts_each_storage_once():
    q = torch.randn(4, 8, requires_grad=True)
    with lesson14.SavedForBackward() as saved:
        (q * q).sum()  # saves q twice: one storage
    assert saved.saved_bytes == q.numel() * 4 and saved.saved_tensors == 1 and saved.largest == (4, 8)


# ---------------------------------------------------------------------------------------------
# check_triton_attention_backward: wrong kernels are real @triton.jit kernels, one constexpr switch each

try:  # Triton ships for Linux only: elsewhere the Triton tests are skipped, and only they
    import triton
    import triton.language as tl
except ImportError:
    triton = None
needs_triton = pytest.mark.skipif(triton is None, reason="Triton cannot be imported here")


if triton is not None:

    @triton.jit
    def switchable_delta(
        O, dO, Delta, n, stride_head, stride_row, D: tl.constexpr, BLOCK: tl.constexpr, TIMES_O: tl.constexpr
    ):
        """D = rowsum(dO ∘ O); TIMES_O=False forgets O: rowsum(dO)."""
        head = tl.program_id(1)
        rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        offsets = head * stride_head + rows[:, None] * stride_row + tl.arange(0, D)[None, :]
        do = tl.load(dO + offsets, mask=rows[:, None] < n, other=0.0).to(tl.float32)
        if TIMES_O:
            do = do * tl.load(O + offsets, mask=rows[:, None] < n, other=0.0).to(tl.float32)
        tl.store(Delta + head * n + rows, tl.sum(do, axis=1), mask=rows < n)

    @triton.jit
    def switchable_tile(
        q,
        k,
        v,
        do,
        lse,
        delta,
        rows,
        keys,
        n,
        scale,
        CAUSAL: tl.constexpr,
        MASK: tl.constexpr,
        MINUS_D: tl.constexpr,
        LSE_ROWS: tl.constexpr,
    ):
        """A tile's weights P and dS; MASK=False forgets the causal mask, MINUS_D=False the − D term,
        LSE_ROWS=False subtracts lse along the keys."""
        scores = tl.dot(q, tl.trans(k)) * scale
        hidden = (rows[:, None] >= n) | (keys[None, :] >= n)
        if CAUSAL and MASK:
            hidden = hidden | (keys[None, :] > rows[:, None])
        scores = tl.where(hidden, float("-inf"), scores)
        if LSE_ROWS:
            p = tl.exp(scores - lse[:, None])
        else:
            p = tl.exp(scores - lse[None, :])
        dp = tl.dot(do, tl.trans(v))
        if MINUS_D:
            ds = p * (dp - delta[:, None])
        else:
            ds = p * dp
        return p, ds

    @triton.jit
    def switchable_backward(
        Q,
        K,
        V,
        dO,
        LSE,
        Delta,
        dQ,
        dK,
        dV,
        n,
        scale,
        stride_head,
        stride_row,
        D: tl.constexpr,
        BLOCK: tl.constexpr,
        CAUSAL: tl.constexpr,
        KEYS_OUTSIDE: tl.constexpr,
        ATOMIC_DQ: tl.constexpr,
        MASK: tl.constexpr,
        MINUS_D: tl.constexpr,
        LSE_ROWS: tl.constexpr,
        TRANSPOSE_P: tl.constexpr,
        SCALE_DK: tl.constexpr,
    ):
        """KEYS_OUTSIDE: dK and dV of one block of keys (with ATOMIC_DQ, dQ by atomic adds too); else dQ of one
        block of queries. The other switches each leave out one thing."""
        head = tl.program_id(1)
        start = head * stride_head
        dims = tl.arange(0, D)
        if KEYS_OUTSIDE:
            keys = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            key_offsets = keys[:, None] * stride_row + dims[None, :]
            k = tl.load(K + start + key_offsets, mask=keys[:, None] < n, other=0.0)
            v = tl.load(V + start + key_offsets, mask=keys[:, None] < n, other=0.0)
            dk = tl.zeros((BLOCK, D), tl.float32)
            dv = tl.zeros((BLOCK, D), tl.float32)
            for row in range(0, n, BLOCK):
                rows = row + tl.arange(0, BLOCK)
                offsets = rows[:, None] * stride_row + dims[None, :]
                q = tl.load(Q + start + offsets, mask=rows[:, None] < n, other=0.0)
                do = tl.load(dO + start + offsets, mask=rows[:, None] < n, other=0.0)
                lse = tl.load(LSE + head * n + rows, mask=rows < n, other=0.0)
                delta = tl.load(Delta + head * n + rows, mask=rows < n, other=0.0)
                p, ds = switchable_tile(q, k, v, do, lse, delta, rows, keys, n, scale, CAUSAL, MASK, MINUS_D, LSE_ROWS)
                if TRANSPOSE_P:
                    dv += tl.dot(tl.trans(p.to(do.dtype)), do)
                else:
                    dv += tl.dot(p.to(do.dtype), do)
                dk += tl.dot(tl.trans(ds.to(q.dtype)), q)
                if ATOMIC_DQ:
                    tl.atomic_add(dQ + start + offsets, tl.dot(ds.to(k.dtype), k) * scale, mask=rows[:, None] < n)
            if SCALE_DK:
                dk = dk * scale
            tl.store(dK + start + key_offsets, dk.to(dK.dtype.element_ty), mask=keys[:, None] < n)
            tl.store(dV + start + key_offsets, dv.to(dV.dtype.element_ty), mask=keys[:, None] < n)
        else:
            rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            offsets = rows[:, None] * stride_row + dims[None, :]
            q = tl.load(Q + start + offsets, mask=rows[:, None] < n, other=0.0)
            do = tl.load(dO + start + offsets, mask=rows[:, None] < n, other=0.0)
            lse = tl.load(LSE + head * n + rows, mask=rows < n, other=0.0)
            delta = tl.load(Delta + head * n + rows, mask=rows < n, other=0.0)
            dq = tl.zeros((BLOCK, D), tl.float32)
            for first in range(0, n, BLOCK):
                keys = first + tl.arange(0, BLOCK)
                key_offsets = keys[:, None] * stride_row + dims[None, :]
                k = tl.load(K + start + key_offsets, mask=keys[:, None] < n, other=0.0)
                v = tl.load(V + start + key_offsets, mask=keys[:, None] < n, other=0.0)
                p, ds = switchable_tile(q, k, v, do, lse, delta, rows, keys, n, scale, CAUSAL, MASK, MINUS_D, LSE_ROWS)
                dq += tl.dot(ds.to(k.dtype), k)
            tl.store(dQ + start + offsets, (dq * scale).to(dQ.dtype.element_ty), mask=rows[:, None] < n)


def backward_launcher(
    block=16,
    atomic=False,
    times_o=True,
    mask=True,
    minus_d=True,
    lse_rows=True,
    transpose_p=True,
    scale_dk=True,
    honour_causal=True,
):
    """A `triton_attention_backward` (float32) that launches the switchable kernels with one thing wrong (or none)."""

    def triton_attention_backward(Q, K, V, O, dO, lse, causal=False):
        B, h, n, d = Q.shape
        Q, K, V, O, dO, lse = (x.contiguous() for x in (Q, K, V, O, dO, lse))
        delta = torch.empty_like(lse)
        dQ = torch.zeros_like(Q, dtype=torch.float32) if atomic else torch.empty_like(Q)  # atomic adds: float32
        dK, dV = torch.empty_like(K), torch.empty_like(V)
        grid = (triton.cdiv(n, block), B * h)
        strides = (Q.stride(1), Q.stride(2))
        switchable_delta[grid](O, dO, delta, n, *strides, D=d, BLOCK=block, TIMES_O=times_o)
        switches = dict(
            D=d,
            BLOCK=block,
            CAUSAL=causal and honour_causal,
            MASK=mask,
            MINUS_D=minus_d,
            LSE_ROWS=lse_rows,
            TRANSPOSE_P=transpose_p,
            SCALE_DK=scale_dk,
            ATOMIC_DQ=atomic,
        )
        arguments = (Q, K, V, dO, lse, delta, dQ, dK, dV, n, 1 / math.sqrt(d), *strides)
        switchable_backward[grid](*arguments, KEYS_OUTSIDE=True, **switches)
        if not atomic:
            switchable_backward[grid](*arguments, KEYS_OUTSIDE=False, **switches)
        return dQ.to(Q.dtype), dK, dV

    return triton_attention_backward


@needs_triton
def test_the_triton_solution_passes(capsys):
    checks.check_triton_attention_backward(L14["triton_attention_backward"])
    assert capsys.readouterr().out.startswith("✔ triton_attention_backward passes")


@needs_triton
@pytest.mark.parametrize(
    "right",
    [backward_launcher(), backward_launcher(block=32), backward_launcher(atomic=True)],
    ids=["two kernels", "blocks of 32", "dQ by atomic adds (FlashAttention-2's paper)"],
)
def test_other_right_triton_backward_passes_pass(right):
    """No early stop at the diagonal, another block size, dQ by atomic adds: still right."""
    checks.check_triton_attention_backward(right)


def pytorch_inside(Q, K, V, O, dO, lse, causal=False):
    out = L14["attention_backward"](Q, K, V, O, dO, lse, 16, causal)
    return out


TRITON_MISTAKES = {
    "D = rowsum(dO)": (backward_launcher(times_o=False), "your D is the row sums of dO alone"),
    "no − D": (backward_launcher(minus_d=False), "without the − D term"),
    "1/√d forgotten on dK": (backward_launcher(scale_dk=False), "you forgot the 1/√d on dK"),
    "causal mask missing in the backward pass": (
        backward_launcher(mask=False),
        "your backward pass does not apply the mask",
    ),
    "lse along the keys": (backward_launcher(lse_rows=False), "you subtracted lse along the wrong axis"),
    "dV = P dO": (backward_launcher(transpose_p=False), "without transposing it"),
    "PyTorch instead of kernels": (pytorch_inside, "computes with PyTorch's operators"),
    "the stub": (lambda Q, K, V, O, dO, lse, causal=False: stub(), "not written yet"),
}


@needs_triton
@pytest.mark.parametrize("mistake", TRITON_MISTAKES)
def test_check_triton_attention_backward_catches(mistake):
    wrong, message = TRITON_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_triton_attention_backward(wrong)


@needs_triton
def test_without_a_gpu_the_check_asks_for_the_interpreter(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(AssertionError, match=re.escape("os.environ['TRITON_INTERPRET'] = '1'")):
        checks.check_triton_attention_backward(backward_launcher())


def test_without_triton_the_check_says_it_did_not_run_and_grading_gives_no_point(monkeypatch, capsys):
    import sys

    from utils.checks._harness import CheckError

    for name in [name for name in sys.modules if name == "triton" or name.startswith("triton.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError, as where it is absent
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    checks.check_triton_attention_backward(L14["triton_attention_backward"])
    assert "was not checked" in capsys.readouterr().out
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(CheckError, match="not checked"):
        checks.check_triton_attention_backward(L14["triton_attention_backward"])
