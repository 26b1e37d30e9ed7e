"""`utils/model.py`, the tiny GPT of lessons 12-14: its pieces pass the checks of the lessons that
teach them, its attention hook computes what the default does, a KV cache changes no output,
and training and writing do what their docstrings say."""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.notebook_code import solution
from utils import checks, text
from utils.model import (
    TinyGPT,
    causal_mask,
    causal_sdpa,
    evaluate,
    generate,
    get_batch,
    merge_heads,
    pick,
    sinusoidal_encoding,
    split_heads,
    train,
)

KVCache = solution("12_generation")["KVCache"]  # the lesson's own cache: the model is built for it


def explicit(q, k, v):
    """softmax(q kᵀ / √d) v with the bottom-right causal mask, every key/value head repeated in place."""
    k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for x in (k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2]), float("-inf"))
    return scores.softmax(dim=-1) @ v


def small(**options) -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(vocab_size=11, d_model=16, num_heads=4, num_layers=2, context=12, **options).eval()


def test_the_pieces_pass_the_checks_of_the_lessons_that_teach_them(capsys):
    checks.check_causal_mask(lambda n: causal_mask(n))
    checks.check_sinusoidal_encoding(sinusoidal_encoding)
    checks.check_split_heads(split_heads, merge_heads)
    assert capsys.readouterr().out.count("✔") == 3


def test_the_causal_mask_is_aligned_bottom_right():
    assert torch.equal(causal_mask(2, 4), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))
    assert torch.equal(causal_mask(3), torch.ones(3, 3, dtype=torch.bool).tril())


@pytest.mark.parametrize("h, h_kv, n, m", [(4, 4, 5, 5), (4, 2, 5, 5), (4, 1, 1, 7), (4, 2, 3, 8), (2, 2, 1, 1)])
def test_the_default_attention_is_causal_softmax_aligned_bottom_right(h, h_kv, n, m):
    torch.manual_seed(1)
    q, k, v = torch.randn(2, h, n, 8), torch.randn(2, h_kv, m, 8), torch.randn(2, h_kv, m, 8)
    torch.testing.assert_close(causal_sdpa(q, k, v), explicit(q, k, v))


@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
def test_the_attend_hook_computes_what_the_default_does(num_kv_heads):
    model = small(num_kv_heads=num_kv_heads)
    tokens = torch.randint(11, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        default = model(tokens)
        torch.testing.assert_close(model(tokens, attend=explicit), default)  # for one call
        hooked = small(num_kv_heads=num_kv_heads, attend=explicit)  # given at construction: same weights (seed 0)
        torch.testing.assert_close(hooked(tokens), default)


def test_the_hook_receives_the_heads_and_gradients_flow_through_it():
    """What lesson 14 does: train through a function of (q, k, v), here one that records its inputs."""
    seen = []

    def attend(q, k, v):
        seen.append((q.shape, k.shape, v.shape))
        return explicit(q, k, v)

    model = small(num_kv_heads=2, attend=attend).train()
    tokens = torch.randint(11, (3, 12), generator=torch.Generator().manual_seed(3))
    F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    assert seen == [((3, 4, 12, 4), (3, 2, 12, 4), (3, 2, 12, 4))] * 2  # (B, h, T, d), (B, h_kv, T, d) per block
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blocks[0].attention.parameters())


@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
def test_a_kv_cache_gives_the_same_scores_as_rereading_the_text(num_kv_heads):
    model = small(num_kv_heads=num_kv_heads)
    tokens = torch.randint(11, (2, 12), generator=torch.Generator().manual_seed(4))
    caches = [KVCache() for _ in model.blocks]
    with torch.no_grad():
        whole = model(tokens)  # (B, T, vocab)
        steps = [model(tokens[:, :5], caches)] + [model(tokens[:, t : t + 1], caches) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), whole)
    assert len(caches[0]) == 12


def test_the_top_left_causal_flag_is_wrong_with_a_cache():
    """Lesson 12's trap, kept honest: `is_causal=True` with a cache changes the scores."""

    def top_left(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    model = small()
    tokens = torch.randint(11, (1, 8), generator=torch.Generator().manual_seed(5))
    caches = [KVCache() for _ in model.blocks]
    with torch.no_grad():
        model(tokens[:, :7], caches, top_left)
        step = model(tokens[:, 7:], caches, top_left)[:, -1]
        assert not torch.allclose(step, model(tokens)[:, -1])


CHARS = text.Characters("abcdefghij ")


@pytest.mark.parametrize("how", [{"temperature": 0}, {"temperature": 1.0}, {"top_k": 3}, {"top_p": 0.8}])
@pytest.mark.parametrize("num_kv_heads", [None, 2])
def test_cached_generation_writes_what_uncached_generation_writes(how, num_kv_heads):
    model = small(num_kv_heads=num_kv_heads)
    plain = generate(model, CHARS, "abc", 9, seed=3, **how)
    assert len(plain) == 12 and plain.startswith("abc")
    assert generate(model, CHARS, "abc", 9, seed=3, cache=KVCache, **how) == plain
    assert generate(model, CHARS, "abc", 9, seed=3, attend=explicit, **how) == plain


def test_without_a_cache_generation_reads_the_last_context_positions():
    model = small()
    written = generate(model, CHARS, "ab", 20, temperature=0)  # 22 characters, context 12
    assert len(written) == 22
    tokens = CHARS.encode(written)[None]
    with torch.no_grad():
        assert int(model(tokens[:, 9:21])[0, -1].argmax()) == int(tokens[0, 21])  # the last 12 predicted the last
    with pytest.raises(ValueError, match="reads at most 12"):
        generate(model, CHARS, "ab", 20, cache=KVCache)


def test_pick():
    logits = torch.tensor([0.1, 3.0, 2.0, -1.0])
    rng = torch.Generator().manual_seed(0)
    assert int(pick(logits, rng, temperature=0)) == 1
    assert {int(pick(logits, rng, top_k=1)) for _ in range(20)} == {1}
    assert {int(pick(logits, rng, top_k=2)) for _ in range(200)} == {1, 2}
    assert {int(pick(logits, rng, top_p=0.01)) for _ in range(20)} == {1}


def test_characters_round_trip():
    chars = text.Characters("hello world")
    assert len(chars) == 8 and chars.decode(chars.encode("world")) == "world"


def test_training_lowers_the_loss_and_keeps_the_best_weights():
    torch.manual_seed(0)
    ids = torch.randint(5, (400,), generator=torch.Generator().manual_seed(6)).repeat(3)  # a text that repeats
    model = TinyGPT(vocab_size=5, d_model=16, num_heads=2, num_layers=1, context=16)
    before = evaluate(model, ids, batch=8, context=16)
    history = train(model, ids, steps=30, lr=1e-2, batch=8, context=16, val_ids=ids, evaluations=3, log=None)
    assert history["step"] == [0, 10, 20, 30] and len(history["val"]) == 4 and history["seconds"] > 0
    assert history["best"] == min(history["val"]) and history["best"] < before
    assert evaluate(model, ids, batch=8, context=16) == pytest.approx(history["best"])  # the best weights kept
    quiet = train(model, ids, steps=3, lr=1e-2, batch=8, context=16, log=None)  # no held-out text: no evaluation
    assert quiet["val"] == [] and quiet["best"] is None


def test_batches_are_windows_and_their_next_characters():
    ids = torch.arange(100)
    x, y = get_batch(ids, 4, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 10) and torch.equal(y, x + 1)
