"""Lesson 15: the checks of `alibi_score_mod`, `document_mask_mod`, `RollingKVCache` and `latent_attention`
pass right answers written several ways, and catch each classic mistake with the message the learner should read."""

import math
import re
import time

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks
from utils.checks import lesson15

L15 = solution("15_attention_as_a_program")


def test_the_solutions_pass(capsys):
    checks.check_alibi_score_mod(L15["alibi_score_mod"])
    checks.check_document_mask_mod(L15["document_mask_mod"])
    checks.check_rolling_kv_cache(L15["RollingKVCache"])
    checks.check_latent_attention(L15["latent_attention"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" passes")[0] for line in out] == [
        "✔ alibi_score_mod",
        "✔ document_mask_mod",
        "✔ RollingKVCache",
        "✔ latent_attention",
    ]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_the_solutions_work_inside_flex_attention():
    """What the checks call on index grids also runs inside FlexAttention (eager: vmap over every pair)."""
    from torch.nn.attention.flex_attention import create_mask, flex_attention

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 4, 12, 8).unbind(0)
    score_mod = L15["alibi_score_mod"](4)
    slopes = torch.tensor(lesson15.reference_slopes(4)).view(4, 1, 1)
    distance = torch.arange(12)[:, None] - torch.arange(12)
    bias = (-slopes * distance).masked_fill(distance < 0, -math.inf)  # (h, n, n)
    document_ids = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    dense = create_mask(L15["document_mask_mod"](document_ids), None, None, 12, 12, device="cpu")  # (1, 1, n, n)
    same = document_ids[:, None] == document_ids[None, :]
    assert torch.equal(dense[0, 0], same & (distance >= 0))
    out = flex_attention(
        q, k, v, score_mod=lambda s, b, h, i, j: torch.where(i >= j, score_mod(s, b, h, i, j), -math.inf)
    )
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


# ----------------------------------------------------------------------------------------------
# alibi_score_mod


def alibi(slopes_of=None, sign=-1, head="h", distance="q - kv", keep_score=True, multiply=False, odd="error"):
    """An ALiBi factory with one thing done wrong (or none: `alibi()` is right)."""

    def alibi_score_mod(num_heads):
        if not math.log2(num_heads).is_integer():
            if odd == "error":
                raise ValueError(f"num_heads must be a power of two, got {num_heads}")
            if odd == "index error":
                raise IndexError("list index out of range")
        rule = slopes_of or (lambda H: [2 ** (-8 * (i + 1) / H) for i in range(H)])
        slopes = torch.tensor(rule(num_heads))

        def score_mod(score, b, h, q_idx, kv_idx):
            m = slopes[h] if head == "h" else slopes[0]
            d = (q_idx - kv_idx) if distance == "q - kv" else (q_idx - kv_idx).abs()
            if multiply:
                return score * (1 + sign * m * d)
            return (score if keep_score else 0) + sign * m * d

        return score_mod

    return alibi_score_mod


def alibi_reference_code(num_heads):
    """Right, written differently: Press et al.'s reference code, non-powers of two included."""
    slopes = torch.tensor(lesson15.reference_slopes(num_heads))

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (kv_idx - q_idx)

    return score_mod


def alibi_by_where(num_heads):
    """Right, written differently: the distance taken as |q − kv| (the same wherever the key is not in the future)."""
    if num_heads & (num_heads - 1):
        raise ValueError("a power of two, please")
    slopes = 2.0 ** (-8.0 / num_heads * torch.arange(1, num_heads + 1))

    def score_mod(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * torch.abs(q_idx - kv_idx)

    return score_mod


@pytest.mark.parametrize("right", [alibi(), alibi_reference_code, alibi_by_where, alibi(distance="abs")])
def test_other_right_alibis_pass(right):
    checks.check_alibi_score_mod(right)


def alibi_returns_a_number(num_heads):
    return 0.5


def alibi_python_list(num_heads):
    slopes = [2 ** (-8 * (i + 1) / num_heads) for i in range(num_heads)]

    def score_mod(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx)

    return score_mod


def alibi_stub(num_heads):
    raise NotImplementedError("your code here")


ALIBI_MISTAKES = {
    "wrong sign: a bonus for distance": (alibi(sign=+1), "a bonus for distance"),
    "one slope for every head": (alibi(head="first"), "every head of your score_mod has the same slope"),
    "slopes not geometric (1/(h+1))": (
        alibi(slopes_of=lambda H: [1 / (i + 1) for i in range(H)]),
        "geometric sequence",
    ),
    "slopes off by one head": (alibi(slopes_of=lambda H: [2 ** (-8 * i / H) for i in range(H)]), "off by one head"),
    "slopes reversed": (alibi(slopes_of=lambda H: [2 ** (-8 * (H - i) / H) for i in range(H)]), "the wrong way"),
    "slopes of 8 heads whatever the count": (
        alibi(slopes_of=lambda H: [2.0 ** -(i + 1) for i in range(H)]),
        "right for 8 heads only",
    ),
    "the bias alone, the score lost": (alibi(keep_score=False), "returns the bias alone"),
    "the score multiplied": (alibi(multiply=True), "depends on the score itself"),
    "a number instead of a function": (alibi_returns_a_number, "it should return a function"),
    "slopes in a Python list (fails under vmap)": (alibi_python_list, "not a Python list"),
    "a confusing error for 6 heads": (alibi(odd="index error"), "raise a ValueError that says so"),
    "wrong slopes for 6 heads": (alibi(odd="powers"), "num_heads = 6 is not a power of two"),
    "the stub": (alibi_stub, "not written yet"),
}


@pytest.mark.parametrize("mistake", ALIBI_MISTAKES)
def test_check_alibi_score_mod_catches(mistake):
    wrong, message = ALIBI_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_alibi_score_mod(wrong)


# ----------------------------------------------------------------------------------------------
# document_mask_mod


def document(rule):
    def document_mask_mod(document_ids):
        def mask_mod(b, h, q_idx, kv_idx):
            return rule(document_ids, q_idx, kv_idx)

        return mask_mod

    return document_mask_mod


def same(ids, q, kv):
    return ids[q] == ids[kv]


def document_by_boundaries(document_ids):
    """Right, written differently: each token's document start, found once, and `start[q] <= kv <= q`."""
    n = len(document_ids)
    new = torch.ones(n, dtype=torch.bool)
    new[1:] = document_ids[1:] != document_ids[:-1]
    starts = torch.cummax(torch.where(new, torch.arange(n), 0), dim=0).values  # (n,)

    def mask_mod(b, h, q_idx, kv_idx):
        return (starts[q_idx] <= kv_idx) & (kv_idx <= q_idx)

    return mask_mod


def document_writes_ids(document_ids):
    document_ids[0] = 99  # overwrites the learner's input in place
    return document(lambda ids, q, kv: same(ids, q, kv) & (q >= kv))(document_ids)


def document_float(document_ids):
    return document(lambda ids, q, kv: (same(ids, q, kv) & (q >= kv)).float())(document_ids)


def document_python_if(document_ids):
    def mask_mod(b, h, q_idx, kv_idx):
        if q_idx >= kv_idx:  # a Python `if` on a tensor: fails on a grid, and under vmap
            return document_ids[q_idx] == document_ids[kv_idx]
        return False

    return mask_mod


def document_stub(document_ids):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("right", [document(lambda ids, q, kv: same(ids, q, kv) & (kv <= q)), document_by_boundaries])
def test_other_right_document_masks_pass(right):
    checks.check_document_mask_mod(right)


DOCUMENT_MISTAKES = {
    "future allowed, past hidden (direction)": (
        document(lambda ids, q, kv: same(ids, q, kv) & (kv >= q)),
        "the direction is reversed",
    ),
    "not causal within a document": (document(same), "the mask must also be causal"),
    "leaks across documents (causal only)": (
        document(lambda ids, q, kv: q >= kv),
        "Packed documents must not see each other",
    ),
    "leaks into earlier documents": (
        document(lambda ids, q, kv: (ids[kv] <= ids[q]) & (q >= kv)),
        "it leaks across documents",
    ),
    "hides the diagonal": (document(lambda ids, q, kv: same(ids, q, kv) & (kv < q)), "may not see itself"),
    "the opposite meaning": (document(lambda ids, q, kv: ~(same(ids, q, kv) & (kv <= q))), "the opposite meaning"),
    "floats, not bool": (document_float, "a mask_mod returns bool"),
    "a Python if on a tensor": (document_python_if, "combine conditions with `&`"),
    "changes document_ids": (document_writes_ids, "changed its input `document_ids` in place"),
    "the stub": (document_stub, "not written yet"),
}


@pytest.mark.parametrize("mistake", DOCUMENT_MISTAKES)
def test_check_document_mask_mod_catches(mistake):
    wrong, message = DOCUMENT_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_document_mask_mod(wrong)


# ----------------------------------------------------------------------------------------------
# RollingKVCache


def rolling(
    keep="right", positions="text", length="held", in_place=None, order="old first", returns="kept", swap=False
):
    """A rolling cache with one thing done wrong (or none: `rolling()` is right)."""

    class RollingKVCache:
        def __init__(self, sinks, window):
            self.sinks, self.window = sinks, window
            self.keys = self.values = None
            self.index = torch.zeros(0, dtype=torch.long)
            self.seen = 0

        def kept(self, index):
            T = self.seen
            s, w = self.sinks, self.window
            rule = {
                "right": (index < s) | (index >= T - w),
                "no sinks": index >= T - (s + w),
                "window + 1": (index < s) | (index >= T - w - 1),
                "window - 1": (index < s) | (index >= T - w + 1),
                "everything": torch.ones_like(index, dtype=torch.bool),
            }[keep]
            return rule

        def update(self, k, v):
            t = k.shape[2]
            if in_place == "input":
                k.mul_(1.0).add_(0.5)
            new = torch.arange(self.seen, self.seen + t)
            self.seen += t
            if self.keys is None:
                keys, values, index = k, v, new
            else:
                keys = torch.cat([self.keys, k], dim=2)
                values = torch.cat([self.values, v], dim=2)
                index = torch.cat([self.index, new])
            keep = self.kept(index)
            self.keys, self.values, self.index = keys[:, :, keep], values[:, :, keep], index[keep]
            out_k, out_v = (k, v) if returns == "new" else (self.keys, self.values)
            if order == "new first":
                out_k, out_v = out_k.flip(2), out_v.flip(2)
            return (out_v, out_k) if swap else (out_k, out_v)

        @property
        def positions(self):
            if positions == "slots":
                return torch.arange(len(self.index))
            return self.index

        def __len__(self):
            return self.seen if length == "seen" else len(self.index)

    return RollingKVCache


class RollingByIndexing:
    """Right, written differently: every position seen is kept in full, the kept ones picked on the way out."""

    def __init__(self, sinks, window):
        self.sinks, self.window = sinks, window
        self.all_k, self.all_v = [], []

    def update(self, k, v):
        self.all_k.append(k)
        self.all_v.append(v)
        T = sum(x.shape[2] for x in self.all_k)
        index = [i for i in range(T) if i < self.sinks or i >= T - self.window]
        self.positions = torch.tensor(index)
        return torch.cat(self.all_k, dim=2)[:, :, index], torch.cat(self.all_v, dim=2)[:, :, index]

    def __len__(self):
        return len(self.positions) if self.all_k else 0


class RollingWithListPositions(RollingByIndexing):
    """Right too: positions as a list of ints."""

    def update(self, k, v):
        out = super().update(k, v)
        self.positions = self.positions.tolist()
        return out


class RollingWithoutPositions:
    def __init__(self, sinks, window):
        self.inner = rolling()(sinks, window)

    def update(self, k, v):
        return self.inner.update(k, v)

    def __len__(self):
        return len(self.inner)


class RollingStub:
    def __init__(self, sinks, window):
        raise NotImplementedError("your code here")


@pytest.mark.parametrize("right", [rolling(), RollingByIndexing, RollingWithListPositions])
def test_other_right_rolling_caches_pass(right):
    checks.check_rolling_kv_cache(right)


ROLLING_MISTAKES = {
    "sinks evicted": (rolling(keep="no sinks"), "evicted the sinks"),
    "window off by one (one too many)": (rolling(keep="window + 1"), "keeps the last window + 1 positions"),
    "window off by one (one too few)": (rolling(keep="window - 1"), "keeps the last window − 1 positions"),
    "never evicts": (rolling(keep="everything"), "keeps every position"),
    "positions are the slots": (rolling(positions="slots"), "the slots in the cache"),
    "len counts every position seen": (rolling(length="seen"), "the number of positions seen"),
    "changes its input in place": (rolling(in_place="input"), "changed its input `k` in place"),
    "newest first": (rolling(order="new first"), "newest first"),
    "returns only the new step": (rolling(returns="new"), "only this step's"),
    "keys and values swapped": (rolling(swap=True), "returned the values where the keys belong"),
    "no positions": (RollingWithoutPositions, "has no attribute `positions`"),
    "the stub": (RollingStub, "not written yet"),
}


@pytest.mark.parametrize("mistake", ROLLING_MISTAKES)
def test_check_rolling_kv_cache_catches(mistake):
    wrong, message = ROLLING_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_rolling_kv_cache(wrong)


class SharedRolling:
    """Wrong: the storage lives on the class, so every cache is the same cache."""

    store = {"k": None, "v": None, "index": torch.zeros(0, dtype=torch.long), "seen": 0}

    def __init__(self, sinks, window):
        self.sinks, self.window = sinks, window

    def update(self, k, v):
        s = SharedRolling.store
        new = torch.arange(s["seen"], s["seen"] + k.shape[2])
        s["seen"] += k.shape[2]
        keys = k if s["k"] is None else torch.cat([s["k"], k], dim=2)
        values = v if s["v"] is None else torch.cat([s["v"], v], dim=2)
        index = torch.cat([s["index"], new])
        keep = (index < self.sinks) | (index >= s["seen"] - self.window)
        s["k"], s["v"], s["index"] = keys[:, :, keep], values[:, :, keep], index[keep]
        return s["k"], s["v"]

    @property
    def positions(self):
        return SharedRolling.store["index"]

    def __len__(self):
        return len(SharedRolling.store["index"])


def test_check_rolling_kv_cache_catches_shared_storage():
    with pytest.raises(AssertionError, match=re.escape("two caches share their storage")):
        checks.check_rolling_kv_cache(SharedRolling)


# ----------------------------------------------------------------------------------------------
# latent_attention


def latent(cache="c", scale="d_k", causal_rule="as asked", split="right", project=True, pair=True):
    """Multi-head latent attention with one thing done wrong (or none: `latent()` is right)."""

    def latent_attention(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
        B, T, D = x.shape
        c = x @ W_dkv

        def heads(y):
            if split == "no transpose":
                return y.reshape(B, num_heads, T, -1)
            return y.view(B, T, num_heads, -1).transpose(1, 2)

        q, k, v = heads(x @ W_q), heads(c @ W_uk), heads(c @ W_uv)
        width = {"d_k": q.shape[-1], "d_c": c.shape[-1], "D": D, "d_v": v.shape[-1], "none": 1}[scale]
        is_causal = {"as asked": causal, "never": False, "always": True}[causal_rule] and T > 1
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=1 / math.sqrt(width))
        out = out.transpose(1, 2).reshape(B, T, -1)
        if project:
            out = out @ W_o
        cached = {"c": c, "keys": c @ W_uk, "split keys": k}[cache]
        return (out, cached) if pair else out

    return latent_attention


def latent_absorbed(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    """Right, written differently: W_uk absorbed into the queries, W_uv applied after the weights (the decoding form)."""
    B, T, D = x.shape
    h = num_heads
    c = x @ W_dkv  # (B, T, d_c)
    d_c = c.shape[-1]
    d_k, d_v = W_uk.shape[1] // h, W_uv.shape[1] // h
    q = (x @ W_q).view(B, T, h, d_k).transpose(1, 2)  # (B, h, T, d_k)
    q_latent = q @ W_uk.view(d_c, h, d_k).permute(1, 2, 0)  # (B, h, T, d_k) @ (h, d_k, d_c) -> (B, h, T, d_c)
    scores = q_latent @ c[:, None].transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf)
    mixed = scores.softmax(dim=-1) @ c[:, None]  # (B, h, T, d_c)
    out = mixed @ W_uv.view(d_c, h, d_v).transpose(0, 1)  # (B, h, T, d_c) @ (h, d_c, d_v) -> (B, h, T, d_v)
    return out.transpose(1, 2).reshape(B, T, h * d_v) @ W_o, c


def latent_nan(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    out, c = latent()(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal)
    return out * float("nan"), c


def latent_list(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    out, c = latent()(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal)
    return out.tolist(), c


def latent_in_place(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    out, c = latent()(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal)
    x.zero_()
    return out, c


def latent_crash(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    return x @ W_uk, x  # (D) @ (d_c, ·): the shapes do not fit


def latent_hangs(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    while True:
        time.sleep(0.01)


def latent_stub(x, W_dkv, W_uk, W_uv, W_q, W_o, num_heads, causal=True):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("right", [latent(), latent_absorbed])
def test_other_right_latent_attentions_pass(right):
    checks.check_latent_attention(right)


LATENT_MISTAKES = {
    "a cache of keys, not the latent": (latent(cache="keys"), "is the keys"),
    "a cache of keys split into heads": (latent(cache="split keys"), "is the keys"),
    "never causal": (latent(causal_rule="never"), "with causal=True your `latent_attention` lets every query see"),
    "always causal": (latent(causal_rule="always"), "with causal=False your `latent_attention` still hides"),
    "scaled by √d_c": (latent(scale="d_c"), "scales the scores by √d_c"),
    "scaled by √D": (latent(scale="D"), "scales the scores by √D"),
    "not scaled": (latent(scale="none"), "does not scale the scores"),
    "heads split without a transpose": (latent(split="no transpose"), "splits the heads with a reshape"),
    "no output projection": (latent(project=False), "Multiply by W_o last"),
    "returns out only": (latent(pair=False), "return the pair (out, c)"),
    "NaN": (latent_nan, "holds NaN"),
    "a list": (latent_list, "returned a list"),
    "changes x in place": (latent_in_place, "changed its input `x` in place"),
    "crashes": (latent_crash, "raised RuntimeError"),
    "the stub": (latent_stub, "not written yet"),
}


@pytest.mark.parametrize("mistake", LATENT_MISTAKES)
def test_check_latent_attention_catches(mistake):
    wrong, message = LATENT_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_latent_attention(wrong)


def test_a_hanging_latent_attention_is_stopped(monkeypatch):
    monkeypatch.setattr(lesson15, "TIME_LIMIT", 0.3)
    begin = time.perf_counter()
    with pytest.raises(AssertionError, match="endless loop"):
        checks.check_latent_attention(latent_hangs)
    assert time.perf_counter() - begin < 5


def test_the_checks_leave_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    checks.check_alibi_score_mod(L15["alibi_score_mod"])
    checks.check_document_mask_mod(L15["document_mask_mod"])
    checks.check_rolling_kv_cache(L15["RollingKVCache"])
    checks.check_latent_attention(L15["latent_attention"])
    assert torch.equal(before, torch.random.get_rng_state())
