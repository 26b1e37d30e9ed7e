"""The tiny GPT of lessons 12, 13 and 14, defined once (as nanoGPT keeps one `model.py`).

Lessons 07 to 09 built its pieces as exercises; here they are put together, and the lessons that
use the model print this code (`inspect.getsource`) where they first need it, so nothing is hidden:

- `causal_mask`, `sinusoidal_encoding`, `split_heads`, `merge_heads`: lessons 08, 09, 07, in the
  shapes the model needs;
- `causal_sdpa`: the model's default attention, PyTorch's fused kernel with the causal mask aligned
  bottom-right, so that it is right with a KV cache too (lesson 12 shows why `is_causal=True` is not);
- `CausalSelfAttention`, `Block`, `TinyGPT`: the model. Its attention is a function `attend(q, k, v)`
  the model is given, so a lesson can run it through its own attention: the learner's
  `grouped_query_attention` (12), a naive or recording one (13), the learner's `FlashAttention` (14);
- `get_batch`, `evaluate`, `train`: windows of a text, the held-out loss, the training loop (12, 13, 14);
- `pick`, `generate`: greedy, temperature, top-k and top-p sampling, with or without a cache (12, 13).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def causal_mask(n: int, m: int | None = None, device=None) -> torch.Tensor:
    """Lesson 08's mask, True where query i may attend to key j: (n, m) bool, j <= i + m - n.

    With m = n (the default) that is j <= i; with fewer queries than keys the n queries are the
    last n of the m positions (bottom-right, lesson 12), as decoding with a KV cache needs.
    """
    m = n if m is None else m
    return torch.ones(n, m, dtype=torch.bool, device=device).tril(diagonal=m - n)  # (n, m)


def sinusoidal_encoding(n: int, d: int) -> torch.Tensor:
    """Lesson 09's encoding, (n, d): sin on even and cos on odd columns, frequencies 10000^(-2i/d)."""
    position = torch.arange(n)[:, None]  # (n, 1)
    frequency = 10000 ** (-torch.arange(0, d, 2) / d)  # (d/2,)
    encoding = torch.zeros(n, d)
    encoding[:, 0::2] = torch.sin(position * frequency)  # (n, 1) * (d/2,) -> (n, d/2)
    encoding[:, 1::2] = torch.cos(position * frequency)  # (n, d/2)
    return encoding


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Lesson 07: (B, T, h * d) -> (B, h, T, d), head i holding features i*d .. (i+1)*d - 1."""
    B, T, width = x.shape
    return x.view(B, T, num_heads, width // num_heads).transpose(1, 2)  # (B, T, h, d) -> (B, h, T, d)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Lesson 07: (B, h, T, d) -> (B, T, h * d), the heads side by side, head 0 first."""
    B, h, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d)  # (B, T, h, d) -> (B, T, h * d)


def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The model's default attention: q (B, h, n, d), k and v (B, h_kv, m, d) -> (B, h, n, d).

    PyTorch's `F.scaled_dot_product_attention`, causal with the n queries the last n of the m
    positions (bottom-right, lesson 12). With n = m that is `is_causal=True`, which lets PyTorch
    pick its fastest kernel; with a cache (n < m) the mask is built. Fewer key/value heads than
    query heads (h_kv dividing h) are shared by neighbouring query heads (`enable_gqa`).
    """
    n, m = q.shape[-2], k.shape[-2]
    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}  # only when needed: not every kernel takes it
    if n == m:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)  # (B, h, n, d)
    allowed = causal_mask(n, m, device=q.device)  # (n, m): j <= i + m - n
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, **gqa)  # (B, h, n, d)


class CausalSelfAttention(nn.Module):
    """Multi-head attention (lesson 07) with `num_heads` query heads and `num_kv_heads` key/value heads
    (lesson 12), an optional KV cache (lesson 12), and the attention itself a function `attend`."""

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int | None = None):
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads or num_heads
        head_dim = d_model // num_heads
        self.q_proj = nn.Linear(d_model, num_heads * head_dim)
        self.k_proj = nn.Linear(d_model, self.num_kv_heads * head_dim)  # fewer key/value heads: a smaller cache
        self.v_proj = nn.Linear(d_model, self.num_kv_heads * head_dim)
        self.out_proj = nn.Linear(num_heads * head_dim, d_model)

    def forward(self, x: torch.Tensor, cache=None, attend: Attend = causal_sdpa) -> torch.Tensor:
        """x (B, t, D) -> (B, t, D); with a `cache`, the t positions continue what it holds."""
        q = split_heads(self.q_proj(x), self.num_heads)  # (B, h, t, d): queries of the new positions only
        k = split_heads(self.k_proj(x), self.num_kv_heads)  # (B, h_kv, t, d)
        v = split_heads(self.v_proj(x), self.num_kv_heads)  # (B, h_kv, t, d)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, h_kv, T, d): the past's keys and values, then the new ones
        return self.out_proj(merge_heads(attend(q, k, v)))  # (B, h, t, d) -> (B, t, D)


class Block(nn.Module):
    """Attention, then an MLP; each reads a layer-normalised x and adds to x (a residual connection)."""

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, num_heads, num_kv_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, cache=None, attend: Attend = causal_sdpa) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), cache, attend)  # (B, t, D): residual around attention
        return x + self.mlp(self.norm2(x))  # (B, t, D): residual around the MLP


class TinyGPT(nn.Module):
    """Characters (B, t) in, a score for every possible next character (B, t, vocab_size) out.

    `attend(q, k, v)` computes the attention of every block: q (B, h, t, d), k and v (B, h_kv, T, d)
    -> (B, h, t, d), causal; by default `causal_sdpa`. `forward(tokens, caches, attend)` may use
    another for one call. With `caches` (one per block, lesson 12's `KVCache`) the t characters
    continue the text the caches hold, so their positions start at len(caches[0]). The model reads
    at most `context` positions, the length it trains on.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        context: int,
        num_kv_heads: int | None = None,
        attend: Attend | None = None,
    ):
        super().__init__()
        self.context = context
        self.attend = attend or causal_sdpa
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_encoding(context, d_model), persistent=False)  # (context, D)
        self.blocks = nn.ModuleList(Block(d_model, num_heads, num_kv_heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor, caches=None, attend: Attend | None = None) -> torch.Tensor:
        first = len(caches[0]) if caches else 0  # the position of tokens[:, 0] in the text
        if first + tokens.shape[1] > self.context:
            raise ValueError(f"a text of {first + tokens.shape[1]} positions; this model reads at most {self.context}")
        x = self.embed(tokens) + self.positions[first : first + tokens.shape[1]]  # (B, t, D) + (t, D)
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches else None, attend or self.attend)  # (B, t, D)
        return self.head(self.norm(x))  # (B, t, D) @ (D, vocab_size) -> (B, t, vocab_size)


# --- training ------------------------------------------------------------------------------


def get_batch(ids: torch.Tensor, batch: int, context: int, generator: torch.Generator):
    """`batch` random windows of `context` ids (B, T), and the ids that follow each (B, T)."""
    starts = torch.randint(len(ids) - context, (batch,), generator=generator).to(ids.device)  # (B,)
    offsets = starts[:, None] + torch.arange(context, device=ids.device)  # (B, 1) + (T,) -> (B, T)
    return ids[offsets], ids[offsets + 1]


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Mixed precision in `amp_dtype` (lesson 13, on a GPU); None: a context that changes nothing."""
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


@torch.no_grad()
def evaluate(model: TinyGPT, ids: torch.Tensor, batch: int, context: int, batches: int = 4, amp_dtype=None) -> float:
    """Mean next-character loss on `batches` fixed batches of windows of `ids` (the same ones each call)."""
    windows = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(batches):
        x, y = get_batch(ids, batch, context, windows)  # (B, T), (B, T)
        with _autocast(ids.device, amp_dtype):
            logits = model(x)  # (B, T, vocab_size)
        losses.append(F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()))  # (B*T, vocab_size), (B*T,)
    return torch.stack(losses).mean().item()


def train(
    model: TinyGPT,
    train_ids: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch: int,
    context: int,
    val_ids: torch.Tensor | None = None,
    evaluations: int = 10,
    amp_dtype: torch.dtype | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train `model` on random windows of `train_ids` with AdamW, gradients clipped to norm 1 (12, 13, 14).

    With `val_ids`, it measures the held-out loss `evaluations` times along the way (and once before),
    says so through `log`, and keeps the weights of the lowest (early stopping). `amp_dtype` trains in
    mixed precision (bfloat16, or float16 with a gradient scaler); None trains in float32.
    Returns {"step", "train", "val": losses at each evaluation; "seconds": time spent in the steps; "best"}.
    """
    device = train_ids.device
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # float16 only
    windows = torch.Generator().manual_seed(seed)
    every = max(steps // evaluations, 1) if val_ids is not None else steps + 1

    def held_out() -> float:
        return evaluate(model, val_ids, batch, context, amp_dtype=amp_dtype)

    history = {"step": [], "train": [], "val": [], "seconds": 0.0, "best": None}
    best = None
    if val_ids is not None:
        history["step"].append(0)
        history["train"].append(evaluate(model, train_ids, batch, context, amp_dtype=amp_dtype))
        history["val"].append(held_out())
        best = (history["val"][0], copy.deepcopy(model.state_dict()))
    running = 0.0
    _synchronize(device)
    begin = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = get_batch(train_ids, batch, context, windows)  # (B, T), (B, T)
        with _autocast(device, amp_dtype):
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())  # (B*T, vocab_size) against (B*T,)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        running = running + loss.detach()  # no .item() here: it would make the CPU wait for the GPU
        if step % every == 0:
            _synchronize(device)
            history["seconds"] += time.perf_counter() - begin
            history["step"].append(step)
            history["train"].append(running.item() / every)
            history["val"].append(held_out())
            if history["val"][-1] < best[0]:
                best = (history["val"][-1], copy.deepcopy(model.state_dict()))
            running = 0.0
            if log:
                log(f"step {step:4d}   train loss {history['train'][-1]:.3f}   held-out loss {history['val'][-1]:.3f}")
            begin = time.perf_counter()
    _synchronize(device)
    history["seconds"] += time.perf_counter() - begin
    if best is not None:
        model.load_state_dict(best[1])
        history["best"] = best[0]
    return history


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- writing -------------------------------------------------------------------------------


def pick(logits: torch.Tensor, generator: torch.Generator, temperature=1.0, top_k=None, top_p=None) -> torch.Tensor:
    """One id (1,) from the scores `logits` (vocab_size,), as lesson 12 explains: temperature 0 is greedy;
    `top_k` keeps the k highest scores; `top_p` the smallest set whose probabilities reach p."""
    if temperature == 0:
        return logits.argmax()[None]  # (1,)
    logits = logits.float().cpu() / temperature  # (vocab_size,)
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[-1]  # the k-th highest score
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        probabilities, order = logits.softmax(dim=-1).sort(descending=True)  # (vocab_size,), (vocab_size,)
        above = probabilities.cumsum(dim=-1) - probabilities  # (vocab_size,): the mass ranked above each id
        logits = logits.index_fill(0, order[above >= top_p], float("-inf"))  # outside the nucleus
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (1,)


@torch.no_grad()
def generate(
    model: TinyGPT,
    chars,
    prompt: str,
    length: int,
    *,
    cache: Callable | None = None,
    attend: Attend | None = None,
    seed: int = 0,
    **how,
) -> str:
    """`prompt` and `length` more characters, each picked by `pick(**how)` (lessons 12, 13 and 14).

    `chars` turns characters into ids and back (`text.Characters`). Without `cache` every step runs
    the model on the whole text so far (its last `model.context` positions, once the text is longer).
    With `cache`, a class like lesson 12's `KVCache`, one cache per block keeps the keys and values,
    and each step feeds the model only the newest character; the text must then fit in
    `model.context`. `attend` replaces the model's attention for these calls.
    """
    device = model.positions.device
    sampler = torch.Generator().manual_seed(seed)
    tokens = chars.encode(prompt).to(device)[None]  # (1, T)
    caches = [cache() for _ in model.blocks] if cache is not None else None
    new = tokens  # with a cache, the first step reads the whole prompt, then one character per step
    for _ in range(length):
        logits = model(new if caches else tokens[:, -model.context :], caches, attend)[0, -1]  # (vocab_size,)
        new = pick(logits, sampler, **how).to(device)[None]  # (1, 1)
        tokens = torch.cat([tokens, new], dim=1)  # (1, T + 1)
    return chars.decode(tokens[0])
