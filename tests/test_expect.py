"""--expect: a learner's proposed backward einsum, judged numerically and explained."""

from __future__ import annotations

from einsum_magic import derive
from einsum_magic.expect import judge


def shaped(equation, shapes, names=None):
    return derive(equation, names=names, shapes=shapes)


def test_judge_accepts_any_relabelling_and_reordering():
    d = shaped("ij,jk->ik", ((2, 3), (3, 4)))
    assert judge(d, "dL_dA", "ik,jk->ij").passed
    assert judge(d, "dL_dA", "xy,zy->xz").passed
    reordered = judge(d, "dL_dA", "jk,ik->ij")
    assert reordered.passed and "order (B, dL_dC)" in reordered.message
    assert judge(d, "dL_dB", "ik,ij->jk").passed


def test_judge_says_what_is_wrong():
    d = shaped("ij,jk->ik", ((2, 3), (3, 4)))
    shape = judge(d, "dL_dA", "ik,jk->i")
    assert shape.verdict == "wrong shape"
    assert shape.message == ("wrong output shape: the proposal gives (2,), dL_dA must have A's "
                             "shape (2, 3)")
    values = judge(d, "dL_dA", "ik,jl->ij")
    assert values.verdict == "wrong values" and "(2, 3) is right" in values.message
    bad = judge(d, "dL_dA", "ik,j1->ij")
    assert bad.verdict == "invalid" and bad.message.splitlines()[-1].strip() == "^"
    count = judge(d, "dL_dA", "ik->ik")
    assert count.verdict == "invalid" and "takes 2: dL_dC, B" in count.message
    ranks = judge(d, "dL_dA", "ikl,jk->ij")
    assert ranks.verdict == "invalid" and "not a valid einsum over (dL_dC, B)" in ranks.message


def test_judge_with_auxiliary_tensors():
    d = shaped("ij->i", ((2, 3),))
    assert judge(d, "dL_dA", "i,j->ij").passed                 # with np.ones listed
    assert judge(d, "dL_dA", "i->ij").verdict == "invalid"      # j comes from nowhere
    trace = shaped("ii->", ((3, 3),))
    assert judge(trace, "dL_dA", ",ab->ab").passed
    assert judge(trace, "dL_dA", ",ab->ba").passed              # eye is symmetric
    assert not judge(trace, "dL_dA", ",ab->aa").passed


def test_judge_the_positions_of_a_repeated_array():
    d = shaped("ij,jk->ik", ((3, 3), (3, 3)), names=("A", "A"))
    assert judge(d, "dL_dA_1", "ik,jk->ij").passed
    assert judge(d, "dL_dA_2", "ik,ij->jk").passed
    assert not judge(d, "dL_dA_2", "ik,jk->ij").passed


def test_a_size_clash_is_said_in_the_learners_names():
    d = shaped("ij,jk->ik", ((2, 3), (3, 4)))
    forgot_transpose = judge(d, "dL_dA", "ik,kj->ij")
    assert forgot_transpose.verdict == "invalid"
    assert "letter 'k' has size 4 in dL_dC but 3 in B" in forgot_transpose.message


def test_a_bad_seed_is_an_einsum_error():
    import pytest

    from einsum_magic import EinsumError

    with pytest.raises(EinsumError, match="non-negative integer"):
        judge(shaped("ij->i", ((2, 3),)), "dL_dA", "i,j->ij", seed=-1)
