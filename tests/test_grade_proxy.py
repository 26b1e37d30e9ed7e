"""One set of checks, two ways to call the learner's code: every check gives the same verdict and the
same message whether it holds the learner's object or the grader's proxy of it.

Here the "student's process" is played by `serve.py` run in a namespace of this process, and the
channel is the same bytes the grader's kernel messages carry (without a kernel, so that every mistake
of every check runs quickly). The grader's own tests (test_grade.py, test_grade_hostile.py) run the real kernel.
"""

from __future__ import annotations

import base64
import io
import itertools
import re
from pathlib import Path

import pytest
import torch

from tests import test_checks_01_02 as c0102
from tests import test_checks_03_04 as c0304
from tests import test_checks_05_07 as c0507
from tests import test_checks_08_10 as c0810
from tests import test_checks_11 as c11
from tests import test_checks_12 as c12
from tests import test_checks_13 as c13
from tests import test_checks_14 as c14
from tests import test_checks_15 as c15
from utils import checks
from utils.instructor.grade import proxy

SERVE = (Path(proxy.__file__).parent / "serve.py").read_text()


class FakeStudent:
    """`serve.py` in a namespace of its own, answering requests as the kernel does: base64 of `torch.save`
    in, a display of base64 of `torch.save` out."""

    def __init__(self, folder: Path, **names) -> None:
        self.folder, self.namespace, self.numbers = folder, dict(names), itertools.count(1)
        exec(compile(SERVE, "<grader>", "exec"), self.namespace)

    def request(self, payload: dict, timeout: float | None = None) -> dict:
        number, shown = next(self.numbers), []
        buffer = io.BytesIO()
        torch.save({**payload, "number": number}, buffer)
        asked = base64.b64encode(buffer.getvalue()).decode("ascii")
        self.namespace["__grader_serve"](asked, shown.append)
        answer = base64.b64decode(shown[-1]["application/x-grader-answer"])
        return {**torch.load(io.BytesIO(answer), weights_only=True), "number": number}

    def remote(self, name: str):
        return proxy.lookup(self, name)


def _message(check, *arguments) -> str | None:
    torch.manual_seed(0)  # a learner's code that draws random numbers draws the same ones both ways
    try:
        check(*arguments)
    except AssertionError as error:
        return str(error)
    return None


def _both_ways(tmp_path, check, *learners) -> tuple[str | None, str | None]:
    student = FakeStudent(tmp_path, **{f"learner{i}": learner for i, learner in enumerate(learners)})
    proxy.forget(student)  # a new check, as the grader starts each one
    proxies = [student.remote(f"learner{i}") for i in range(len(learners))]
    return _message(check, *learners), _message(check, *proxies)


def _normalised(message: str | None) -> str | None:
    """Object addresses differ between two runs; nothing else may."""
    return message and re.sub(r"0x[0-9a-f]+", "0x…", message)


CASES = [
    (checks.check_average, c0102.AVERAGE_MISTAKES),
    (checks.check_uniform_weights, c0102.UNIFORM_MISTAKES),
    (checks.check_normalize_rows, c0102.NORMALIZE_MISTAKES),
    (checks.check_causal_average_weights, c0102.CAUSAL_MISTAKES),
    (checks.check_extract_patches, c0304.EXTRACT_MISTAKES),
    (checks.check_nlm_weights, c0304.NLM_WEIGHTS_MISTAKES),
    (checks.check_gaussian_weights, c0304.GAUSSIAN_MISTAKES),
    (checks.check_nadaraya_watson, c0304.NADARAYA_MISTAKES),
    (checks.check_softmax, c0507.SOFTMAX_MISTAKES),
    (checks.check_dot_product_attention, c0507.DOT_MISTAKES),
    (checks.check_scaled_dot_product_attention, c0507.SCALED_MISTAKES),
    (checks.check_self_attention, c0507.SELF_ATTENTION_MISTAKES),
    (checks.check_multi_head_attention, c0507.MHA_MISTAKES),
    (checks.check_causal_mask, c0810.CAUSAL_MISTAKES),
    (checks.check_padding_mask, c0810.PADDING_MISTAKES),
    (checks.check_sliding_window_mask, c0810.WINDOW_MISTAKES),
    (checks.check_masked_softmax, c0810.SOFTMAX_MISTAKES),
    (checks.check_masked_attention, c0810.ATTENTION_MISTAKES),
    (checks.check_sinusoidal_encoding, c0810.SINUSOIDAL_MISTAKES),
    (checks.check_apply_rope, c0810.ROPE_MISTAKES),
    (checks.check_cross_attention, c0810.CROSS_MISTAKES),
    (checks.check_additive_scores, c0810.ADDITIVE_MISTAKES),
    (checks.check_previous_token_scores, c11.PREVIOUS_MISTAKES),
    (checks.check_induction_scores, c11.INDUCTION_MISTAKES),
    # "storage shared by every cache" is left out: both "students" here live in this one process and share
    # the test's class attribute, which two graded students, each in a kernel of their own, never do.
    (checks.check_kv_cache, {k: v for k, v in c12.CACHE_MISTAKES.items() if k != "storage shared by every cache"}),
    (checks.check_repeat_kv, c12.REPEAT_MISTAKES),
    (checks.check_grouped_query_attention, c12.GQA_MISTAKES),
    (checks.check_tiled_attention, c13.MISTAKES),
    (checks.check_triton_attention, c13.TRITON_MISTAKES),
    (checks.check_linear_attention, c13.LINEAR_MISTAKES),
    (checks.check_attention_backward, c14.MISTAKES),
    (checks.check_flash_attention, c14.FLASH_MISTAKES),
    (checks.check_triton_attention_backward, c14.TRITON_MISTAKES),
    (checks.check_alibi_score_mod, c15.ALIBI_MISTAKES),
    (checks.check_document_mask_mod, c15.DOCUMENT_MISTAKES),
    (checks.check_rolling_kv_cache, c15.ROLLING_MISTAKES),
    (checks.check_latent_attention, c15.LATENT_MISTAKES),
]
MISTAKES = [
    pytest.param(check, mistakes[name][:-1], id=f"{check.__name__}: {name}")
    for check, mistakes in CASES
    for name in mistakes
    if isinstance(mistakes[name], tuple)
]


# Mistakes that write into a tensor given in an earlier call: locally the check sees the tensor change; the
# grader's own tensors never change (it judges on inputs the student's code never held), so it names the write.
WRITES_INTO_EARLIER_INPUTS = {"cat with out= into what it was given"}


@pytest.mark.parametrize("check, learners", MISTAKES)
def test_each_mistake_gets_the_same_message_through_the_proxy(request, tmp_path, check, learners):
    local, remote = _both_ways(tmp_path, check, *learners)
    assert local is not None, "the mistake passes its check even locally"
    if any(case in request.node.name for case in WRITES_INTO_EARLIER_INPUTS):
        assert remote is not None and "changed a tensor it was given in an earlier call" in remote, remote
        return
    assert _normalised(remote) == _normalised(local)


@pytest.mark.parametrize("check, learner", [(check, c0810.CHECKS[i][1]) for i, (check, _) in enumerate(c0810.CHECKS)])
def test_the_solutions_pass_through_the_proxy(tmp_path, check, learner):
    assert _both_ways(tmp_path, check, learner) == (None, None)


def test_lesson_15_solutions_pass_through_the_proxy(tmp_path):
    """The factories return functions that stay in the student's process: the checks call them there."""
    lesson = c15.L15
    for check, name in (
        (checks.check_alibi_score_mod, "alibi_score_mod"),
        (checks.check_document_mask_mod, "document_mask_mod"),
        (checks.check_rolling_kv_cache, "RollingKVCache"),
        (checks.check_latent_attention, "latent_attention"),
    ):
        assert _both_ways(tmp_path, check, lesson[name]) == (None, None), name


def test_split_heads_and_multi_head_attention_pass_through_the_proxy(tmp_path):
    from tests.notebook_code import solution

    lesson = solution("07_multi_head_attention")
    assert _both_ways(tmp_path, checks.check_split_heads, lesson["split_heads"], lesson["merge_heads"]) == (None, None)
    assert _both_ways(tmp_path, checks.check_multi_head_attention, lesson["MultiHeadAttention"]) == (None, None)
    lesson = solution("06_queries_keys_values")
    assert _both_ways(tmp_path, checks.check_self_attention, lesson["SelfAttention"]) == (None, None)


def test_a_proxy_brings_back_only_data_and_handles(tmp_path):
    class Secret:
        def __eq__(self, other):
            return True

    student = FakeStudent(tmp_path, make=lambda: (torch.ones(2), [3, "x"], {"k": Secret()}))
    tensor, plain, holder = student.remote("make")()
    assert torch.equal(tensor, torch.ones(2)) and plain == [3, "x"]
    assert isinstance(holder["k"], proxy.Remote) and type(holder["k"]).__name__ == "Secret"
    assert holder["k"] != 1 and not (holder["k"] == holder["k"] is False)


def test_a_returned_tensor_that_changed_later_changes_for_the_check_too_but_never_the_graders_input(tmp_path):
    kept, buffer = [], torch.ones(2)

    def keep(x):
        kept.append(x)
        return buffer

    def spoil():
        kept[0].zero_()  # the input of an earlier call, written into
        buffer.add_(1)  # a tensor returned earlier, written into

    student = FakeStudent(tmp_path, keep=keep, spoil=spoil)
    proxy.forget(student)
    given = torch.ones(3)
    returned = student.remote("keep")(given)
    assert torch.equal(given, torch.ones(3)) and torch.equal(returned, torch.ones(2))
    student.remote("spoil")()
    assert torch.equal(given, torch.ones(3)), "the student's code wrote into the grader's own input"
    assert torch.equal(returned, torch.full((2,), 2.0))


def test_writing_into_an_input_is_named_however_it_is_done(tmp_path):
    """Through the proxy the grader's inputs never change, so a write into one is reported, not mirrored:
    in the call that made it, or (an input of an earlier call) by the next call of the check."""
    kept = []

    def zeroes(X):
        X.zero_()
        return X.sum(dim=0)

    def keeps(X):
        if kept:
            kept[0].zero_()
        kept.append(X)
        return X.sum(dim=0)

    student = FakeStudent(tmp_path, zeroes=zeroes, keeps=keeps)
    proxy.forget(student)
    with pytest.raises(AssertionError, match="changed its input `X` in place"):
        checks.check_average(student.remote("zeroes"))
    with pytest.raises(AssertionError, match="changed a tensor it was given in an earlier call"):
        checks.check_average(student.remote("keeps"))


def test_len_indexing_and_iteration_only_where_the_students_class_has_them(tmp_path):
    class Sized:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.tensor(float(i))

    class Plain:
        pass

    student = FakeStudent(tmp_path, sized=Sized(), plain=Plain())
    sized, plain = student.remote("sized"), student.remote("plain")
    assert len(sized) == 3 and float(sized[2]) == 2.0
    assert hasattr(type(sized), "__len__") and not hasattr(type(plain), "__len__")
    with pytest.raises(TypeError):
        len(plain)


def test_gradients_flow_back_through_a_call_to_inputs_that_are_not_leaves(tmp_path):
    student = FakeStudent(tmp_path, scale=lambda x, s: x * s)
    sigma = torch.tensor(2.0, requires_grad=True)
    x = torch.arange(3.0, requires_grad=True)
    out = student.remote("scale")(x * 1, sigma * 3)  # (3,), both inputs made from leaves
    out.sum().backward()
    assert torch.allclose(sigma.grad, torch.tensor(9.0)) and torch.allclose(x.grad, torch.full((3,), 6.0))
