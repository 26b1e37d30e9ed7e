"""The course's own facts in one place: where it lives, its lessons, and the set-up
every notebook's first cell runs."""

from __future__ import annotations

import platform
import random
import re
from dataclasses import dataclass
from pathlib import Path

# The GitHub repository the Colab badges and the Colab set-up point to.
# Change it with one command: `python -m utils.build --repo OWNER/REPO`.
REPOSITORY = "example-org/self-attention-course"

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
FIGURES = ROOT / "figures"


@dataclass(frozen=True)
class Lesson:
    number: int
    stem: str
    title: str
    question: str

    @property
    def filename(self) -> str:
        return f"{self.stem}.ipynb"


LESSONS = (
    Lesson(1, "01_averaging", "Averaging", "What do we want from a sequence layer, and why is a plain average not it?"),
    Lesson(2, "02_weighted_average", "Weighted averages", "What if an oracle told us which words matter to which?"),
    Lesson(3, "03_non_local_means", "Non-local means", "Where can weights come from without an oracle?"),
    Lesson(
        4,
        "04_kernel_regression",
        "Kernel regression",
        "The same idea as a regression: where do queries, keys and values come from?",
    ),
    Lesson(
        5,
        "05_dot_product_attention",
        "Dot-product attention",
        "What similarity for vectors is cheap, and what does `softmax(X Xᵀ) X` do?",
    ),
    Lesson(6, "06_queries_keys_values", "Queries, keys and values", "How can relevance be learned rather than fixed?"),
    Lesson(7, "07_multi_head_attention", "Multi-head attention", "Why is one kind of relevance per layer too few?"),
    Lesson(8, "08_masking", "Masking", "How do we keep some positions from being looked at?"),
    Lesson(
        9, "09_positional_encoding", "Positional encoding", "Attention cannot tell order: how do we give it positions?"
    ),
    Lesson(
        10,
        "10_beyond_self_attention",
        "Beyond self-attention",
        "How does attention work between two sequences, and where did it come from?",
    ),
    Lesson(
        11,
        "11_what_heads_learn",
        "What heads learn",
        "We can build an attention layer; what do the heads of a trained stack actually do?",
    ),
    Lesson(
        12,
        "12_generation",
        "Generation",
        "How does a trained model write, one token at a time, without redoing all its work?",
    ),
    Lesson(13, "13_attention_on_gpu", "Attention on a GPU", "What does attention cost, and how is it made fast?"),
    Lesson(
        14,
        "14_training_through_the_kernel",
        "Training through the kernel",
        "Attention is trained: how does FlashAttention's backward pass work without the n×m weights?",
    ),
    Lesson(
        15,
        "15_attention_as_a_program",
        "Attention as a program",
        "How do masks, positions and caches become small functions that a compiler fuses into attention?",
    ),
)


# The exercises of each lesson, in order: the names the checks, tests and grader rely on.
EXERCISES = {
    "01_averaging": ("average", "uniform_weights"),
    "02_weighted_average": ("normalize_rows", "causal_average_weights"),
    "03_non_local_means": ("extract_patches", "nlm_weights", "non_local_means"),
    "04_kernel_regression": ("gaussian_weights", "nadaraya_watson"),
    "05_dot_product_attention": ("softmax", "dot_product_attention", "scaled_dot_product_attention"),
    "06_queries_keys_values": ("SelfAttention",),
    "07_multi_head_attention": ("split_heads", "MultiHeadAttention"),
    "08_masking": ("causal_mask", "padding_mask", "sliding_window_mask", "masked_softmax", "masked_attention"),
    "09_positional_encoding": ("sinusoidal_encoding", "apply_rope"),
    "10_beyond_self_attention": ("CrossAttention", "additive_scores"),
    "11_what_heads_learn": ("previous_token_scores", "induction_scores"),
    "12_generation": ("KVCache", "repeat_kv", "grouped_query_attention"),
    "13_attention_on_gpu": ("tiled_attention", "triton_attention", "linear_attention"),
    "14_training_through_the_kernel": ("attention_backward", "FlashAttention", "triton_attention_backward"),
    "15_attention_as_a_program": ("document_mask_mod", "alibi_score_mod", "RollingKVCache", "latent_attention"),
}


def check_name(exercise: str) -> str:
    """`check_<exercise>` in snake case: `MultiHeadAttention` -> `check_multi_head_attention`,
    `KVCache` -> `check_kv_cache` (an acronym stays one word)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", exercise).lower()
    return f"check_{snake}"


def colab_url(lesson: Lesson, repository: str = REPOSITORY) -> str:
    """The "Open in Colab" address of a lesson's learner copy."""
    return f"https://colab.research.google.com/github/{repository}/blob/main/notebooks/{lesson.filename}"


def start(seed: int = 0, quiet: bool = False):
    """Seed every generator, pick the device, print versions (every lesson's first cell)."""
    import matplotlib
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not quiet:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
        print(
            f"python {platform.python_version()} · torch {torch.__version__} · numpy {np.__version__} · "
            f"matplotlib {matplotlib.__version__} · device: {device} ({name}) · seed {seed}"
        )
    return device


def show_code(*objects) -> None:
    """Show the source of each function or class, as a lesson's code cell would (lessons 12 and 13 show the
    tiny GPT of `utils/model.py` this way, so that the code they use is the code the learner reads)."""
    import inspect

    source = "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects) + "\n"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:  # in Jupyter: highlighted, and plain text beside
        display({"text/markdown": f"```python\n{source}```", "text/plain": source}, raw=True)
    else:
        print(source)
