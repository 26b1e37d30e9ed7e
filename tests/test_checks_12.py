"""Lesson 12: the checks of `KVCache`, `repeat_kv` and `grouped_query_attention` pass right answers
written several ways, and catch each classic mistake with the message the learner should read."""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks

L12 = solution("12_generation")


def test_the_solutions_pass(capsys):
    checks.check_kv_cache(L12["KVCache"])
    checks.check_repeat_kv(L12["repeat_kv"])
    checks.check_grouped_query_attention(L12["grouped_query_attention"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" passes")[0] for line in out] == [
        "✔ KVCache",
        "✔ repeat_kv",
        "✔ grouped_query_attention",
    ]


# ----------------------------------------------------------------------------------------------
# KVCache


class ListCache:
    """Right, written differently: a list of steps, concatenated on every call."""

    def __init__(self):
        self.keys, self.values = [], []

    def update(self, k, v):
        self.keys.append(k)
        self.values.append(v)
        return torch.cat(self.keys, dim=2), torch.cat(self.values, dim=2)

    def __len__(self):
        return sum(k.shape[2] for k in self.keys)


class BufferCache:
    """Right, written differently: a preallocated buffer that grows by doubling; it returns views of the
    filled part, which later steps never write into (they write past it, or into a new buffer)."""

    def __init__(self):
        self.k = self.v = None
        self.length = 0

    def update(self, k, v):
        t = k.shape[2]
        if self.k is None or self.length + t > self.k.shape[2]:
            size = max(2 * (self.length + t), 4)
            k_new = k.new_zeros(*k.shape[:2], size, k.shape[3])
            v_new = v.new_zeros(*v.shape[:2], size, v.shape[3])
            if self.k is not None:
                k_new[:, :, : self.length] = self.k[:, :, : self.length]
                v_new[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = k_new, v_new
        self.k[:, :, self.length : self.length + t] = k
        self.v[:, :, self.length : self.length + t] = v
        self.length += t
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def __len__(self):
        return self.length


@pytest.mark.parametrize("right", [ListCache, BufferCache])
def test_other_right_caches_pass(right):
    checks.check_kv_cache(right)


def cache(returns="all", order="old first", length="T", storage="instance", swap=False, dtype=None, in_place=None):
    """A KV cache with one thing done wrong (or none: `cache()` is right)."""

    class KVCache:
        shared = {"k": None, "v": None, "calls": 0}

        def __init__(self):
            self.store = KVCache.shared if storage == "class" else {"k": None, "v": None, "calls": 0}

        def update(self, k, v):
            store = self.store
            if dtype is not None:
                k, v = k.to(dtype), v.to(dtype)
            store["calls"] += 1
            if store["k"] is None:
                store["k"], store["v"] = k, v
            elif in_place == "cat out=":  # writes into the first k it was given, and into what it returned
                old_k, old_v = store["k"].clone(), store["v"].clone()
                torch.cat([old_k, k], dim=2, out=store["k"].resize_(0))
                torch.cat([old_v, v], dim=2, out=store["v"].resize_(0))
            else:
                pair = [store["k"], k] if order == "old first" else [k, store["k"]]
                store["k"] = torch.cat(pair, dim=2 if order != "heads" else 1)
                pair = [store["v"], v] if order == "old first" else [v, store["v"]]
                store["v"] = torch.cat(pair, dim=2 if order != "heads" else 1)
            if in_place == "input":
                k.mul_(2.0)
            keys, values = (k, v) if returns == "new" else (store["k"], store["v"])
            if returns == "keys only":
                return keys
            return (values, keys) if swap else (keys, values)

        def __len__(self):
            if self.store["k"] is None:
                return 0
            return self.store["calls"] if length == "calls" else self.store["k"].shape[2]

    return KVCache


class NoLength:
    def __init__(self):
        self.keys = self.values = None

    def update(self, k, v):
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=2)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=2)
        return self.keys, self.values


class LengthOfNone(NoLength):
    def __len__(self):
        return self.keys.shape[2]


class StubCache:
    def __init__(self):
        raise NotImplementedError("your code here")


CACHE_MISTAKES = {
    "returns only the new step": (cache(returns="new"), "only this step's"),
    "returns only the keys": (cache(returns="keys only"), "it should return the pair (keys, values)"),
    "newest first": (cache(order="new first"), "newest first"),
    "appends along the heads axis": (cache(order="heads"), "along the heads axis (dim 1)"),
    "keys and values swapped": (cache(swap=True), "returned the values where the keys belong"),
    "len counts the updates": (cache(length="calls"), "it counts the calls to update, not the positions"),
    "changes its input in place": (cache(in_place="input"), "changed its input `k` in place"),
    "cat with out= into what it was given": (cache(in_place="cat out="), "changed the k or v it was given"),
    "storage shared by every cache": (cache(storage="class"), "two caches share their storage"),
    "float32 whatever it is given": (cache(dtype=torch.float32), "of dtype torch.float32 for inputs of dtype"),
    "no __len__": (NoLength, "has no `__len__`"),
    "len of an empty cache fails": (LengthOfNone, "holds T = 0 positions: return 0"),
    "the stub": (StubCache, "not written yet"),
}


def test_the_right_cache_factory_passes():
    checks.check_kv_cache(cache())


@pytest.mark.parametrize("mistake", CACHE_MISTAKES)
def test_check_kv_cache_catches(mistake):
    wrong, message = CACHE_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_kv_cache(wrong)


class ReturnsItsBuffer:
    """Wrong: returns the whole buffer, then writes the next step into it in place (a buffer the
    size of what it holds, grown with resize_): what it returned earlier changes."""

    def __init__(self):
        self.k = self.v = None

    def update(self, k, v):
        if self.k is None:
            self.k, self.v = k.clone(), v.clone()
        else:
            T = self.k.shape[2]
            old_k, old_v = self.k.clone(), self.v.clone()
            self.k.resize_(*k.shape[:2], T + k.shape[2], k.shape[3])
            self.v.resize_(*v.shape[:2], T + v.shape[2], v.shape[3])
            self.k.copy_(torch.cat([old_k, k], dim=2))
            self.v.copy_(torch.cat([old_v, v], dim=2))
        return self.k, self.v

    def __len__(self):
        return 0 if self.k is None else self.k.shape[2]


def test_check_kv_cache_catches_a_return_changed_later():
    with pytest.raises(AssertionError, match=re.escape("changed when update 2 ran")):
        checks.check_kv_cache(ReturnsItsBuffer)


# ----------------------------------------------------------------------------------------------
# repeat_kv


def repeat_by_expand(x, groups):
    """Right, written differently: a broadcast view, then one reshape (as Llama's code does)."""
    B, h_kv, T, d = x.shape
    return x[:, :, None].expand(B, h_kv, groups, T, d).reshape(B, h_kv * groups, T, d)


def repeat_by_index(x, groups):
    """Right, written differently: pick head j // groups for every output head j."""
    return x[:, torch.arange(x.shape[1] * groups) // groups]


@pytest.mark.parametrize("right", [repeat_by_expand, repeat_by_index])
def test_other_right_repeats_pass(right):
    checks.check_repeat_kv(right)


def repeat_stub(x, groups):
    raise NotImplementedError("your code here")


REPEAT_MISTAKES = {
    "tiled (repeat) instead of grouped": (lambda x, groups: x.repeat(1, groups, 1, 1), "tiles the heads"),
    "every head from head 0": (
        lambda x, groups: x[:, :1].expand(-1, x.shape[1] * groups, -1, -1),
        "every query head gets key/value head 0",
    ),
    "repeated along time": (lambda x, groups: x.repeat_interleave(groups, dim=2), "repeated along time (dim 2)"),
    "not repeated": (lambda x, groups: x, "expected shape"),
    "in place": (lambda x, groups: x.mul_(1.5).repeat_interleave(groups, dim=1), "changed its input `x` in place"),
    "the stub": (repeat_stub, "not written yet"),
}


@pytest.mark.parametrize("mistake", REPEAT_MISTAKES)
def test_check_repeat_kv_catches(mistake):
    wrong, message = REPEAT_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_repeat_kv(wrong)


# ----------------------------------------------------------------------------------------------
# grouped_query_attention


def repeat_kv(x, groups):
    return x.repeat_interleave(groups, dim=1)


def gqa(heads="grouped", mask="bottom-right", scale="sqrt d", pair=False, one_output_per_kv_head=False, inverted=False):
    """Grouped-query attention with one thing done wrong (or none: `gqa()` is right). Calls `repeat_kv`."""

    def grouped_query_attention(Q, K, V, causal=False):
        h, h_kv = Q.shape[1], K.shape[1]
        n, m, d = Q.shape[-2], K.shape[-2], Q.shape[-1]
        groups = h // h_kv
        if one_output_per_kv_head:
            Q = Q[:, ::groups]
        elif heads == "grouped":
            K, V = repeat_kv(K, groups), repeat_kv(V, groups)
        elif heads == "tiled":
            K, V = K.repeat(1, groups, 1, 1), V.repeat(1, groups, 1, 1)
        elif heads == "head 0":
            K, V = K[:, :1], V[:, :1]
        divisor = {"sqrt d": math.sqrt(d), "none": 1.0, "d": d, "sqrt d_v": math.sqrt(V.shape[-1])}[scale]
        scores = Q @ K.transpose(-2, -1) / divisor
        if causal:
            offset = {"bottom-right": m - n, "top-left": 0, "no diagonal": m - n - 1, "ignored": m}[mask]
            allowed = torch.ones(n, m, dtype=torch.bool).tril(diagonal=offset)
            scores = scores.masked_fill(allowed if inverted else ~allowed, float("-inf"))
        weights = scores.softmax(dim=-1)
        out = weights @ V
        return (out, weights) if pair else out

    return grouped_query_attention


def gqa_by_reshaped_queries(Q, K, V, causal=False):
    """Right, written differently: the query heads folded into groups, keys never repeated."""
    B, h, n, d = Q.shape
    h_kv, m = K.shape[1], K.shape[2]
    q = Q.reshape(B, h_kv, h // h_kv, n, d)  # (B, h_kv, g, n, d)
    scores = q @ K[:, :, None].transpose(-2, -1) / math.sqrt(d)  # (B, h_kv, g, n, m)
    if causal:
        scores = scores.masked_fill(torch.arange(m) > torch.arange(n)[:, None] + (m - n), float("-inf"))
    out = scores.softmax(dim=-1) @ V[:, :, None]  # (B, h_kv, g, n, d_v)
    return out.reshape(B, h, n, V.shape[-1])


def gqa_by_sdpa(Q, K, V, causal=False):
    """Right, written differently: PyTorch's kernel given the bottom-right mask."""
    n, m = Q.shape[-2], K.shape[-2]
    mask = torch.ones(n, m, dtype=torch.bool).tril(diagonal=m - n) if causal else None
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, enable_gqa=True)


@pytest.mark.parametrize("right", [gqa(), gqa_by_reshaped_queries, gqa_by_sdpa])
def test_other_right_attentions_pass(right):
    checks.check_grouped_query_attention(right)


def gqa_stub(Q, K, V, causal=False):
    raise NotImplementedError("your code here")


GQA_MISTAKES = {
    "is_causal=True with a cache (top-left)": (
        lambda Q, K, V, causal=False: F.scaled_dot_product_attention(Q, K, V, is_causal=causal, enable_gqa=True),
        "aligned top-left",
    ),
    "top-left mask": (gqa(mask="top-left"), "aligned top-left"),
    "ignores causal": (gqa(mask="ignored"), "gives the same output as without it"),
    "masks whatever causal says": (
        lambda Q, K, V, causal=False: gqa()(Q, K, V, causal=True),
        "with causal=False your `grouped_query_attention` masks the keys after each query",
    ),
    "hides the diagonal": (gqa(mask="no diagonal"), "hides each query's own position"),
    "the allowed mask passed to masked_fill (inverted)": (
        gqa(inverted=True),
        "causal mask is inverted for Q of shape (2, 4, 1, 8), K of shape (2, 2, 9, 8), V of shape (2, 2, 9, 4), "
        "causal = True: `scores.masked_fill(mask, -inf)` hides the keys where `mask` is True",
    ),
    "tiled (repeat) instead of grouped": (gqa(heads="tiled"), "the heads tiled"),
    "every query head on key/value head 0": (gqa(heads="head 0"), "attends with key/value head 0"),
    "no scaling": (gqa(scale="none"), "you did not scale the scores"),
    "scaled by d": (gqa(scale="d"), "divide by its square root"),
    "scaled by √d_v": (gqa(scale="sqrt d_v"), "you scaled by √d_v"),
    "returns (out, weights)": (gqa(pair=True), "return only `out`"),
    "one output per key/value head": (gqa(one_output_per_kv_head=True), "one output per key/value head"),
    "the stub": (gqa_stub, "not written yet"),
}


@pytest.mark.parametrize("mistake", GQA_MISTAKES)
def test_check_grouped_query_attention_catches(mistake):
    wrong, message = GQA_MISTAKES[mistake]
    with pytest.raises(AssertionError, match=re.escape(message)):
        checks.check_grouped_query_attention(wrong)


def test_a_wrong_repeat_kv_is_named_first():
    """A learner whose attention calls their own (tiled) repeat_kv is told to fix repeat_kv first."""
    namespace = {"torch": torch, "math": math}
    exec(
        "def repeat_kv(x, groups):\n    return x.repeat(1, groups, 1, 1)\n\n"
        "def grouped_query_attention(Q, K, V, causal=False):\n"
        "    g = Q.shape[1] // K.shape[1]\n"
        "    K, V = repeat_kv(K, g), repeat_kv(V, g)\n"
        "    return torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1) @ V\n",
        namespace,
    )
    with pytest.raises(AssertionError, match=re.escape("your `repeat_kv` is wrong: fix it first")):
        checks.check_grouped_query_attention(namespace["grouped_query_attention"])


def test_the_checks_leave_the_global_random_state_alone():
    before = torch.random.get_rng_state()
    checks.check_kv_cache(L12["KVCache"])
    checks.check_repeat_kv(L12["repeat_kv"])
    checks.check_grouped_query_attention(L12["grouped_query_attention"])
    assert torch.equal(before, torch.random.get_rng_state())
