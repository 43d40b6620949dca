"""The exported NumPy, JAX and PyTorch backward against jax.vjp, and what compile() runs."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from einsum_magic import EinsumError, derive
from einsum_magic.compute.export import TARGETS, compiled, export
from reference import assert_grads_equal, jax_vjp, random_operands

# (equation, shapes, names): names given where one array is passed at several positions.
HARD_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)], None),
    ("ii->", [(3, 3)], None),
    ("ii->i", [(3, 3)], None),
    ("ij->i", [(2, 3)], None),
    ("nd,nn->d", [(3, 2), (3, 3)], None),
    ("ijji,kji,jj->kj", [(2, 3, 3, 2), (4, 3, 2), (3, 3)], None),
    ("i,i", [(3,), (1,)], None),
    ("cij,cjk->cik", [(1, 4, 5), (3, 5, 6)], None),
    ("...ij,...jk->...ik", [(1, 2, 3), (5, 3, 4)], None),
    ("ba", [(2, 3)], None),
    ("ij,ij->", [(2, 3), (2, 3)], ("A", "A")),
    (",ij->ij", [(), (2, 3)], None),
    ("iij,jk->ik", [(2, 2, 3), (3, 4)], None),
    ("ijk->j", [(2, 3, 4)], None),
    ("ij,k->ik", [(2, 3), (4,)], None),
    ("iii->i", [(2, 2, 2)], None),
    ("ij->ij", [(2, 3)], None),
    ("ij,jk,kl->il", [(2, 30), (30, 3), (3, 40)], None),
    ("i,ij,j->", [(3,), (3, 3), (3,)], ("x", "A", "x")),
    ("ij,ji->", [(3, 3), (3, 3)], ("A", "A")),
    ("pa,aqb,br,pc,cqd,dr->", [(2, 3), (3, 2, 4), (4, 2), (2, 5), (5, 2, 3), (3, 2)], None),
    ("ij,ij->", [(0, 3), (0, 3)], None),
]
IDS = [f"{eq}{'' if names is None else ' ' + ','.join(names)}" for eq, _, names in HARD_CASES]


def _problem(equation, shapes, names):
    """The derivation, the distinct operands, the cotangent and jax.vjp's gradient per name."""
    d = derive(equation, names=names, shapes=shapes)
    ops = random_operands(shapes, seed=1)
    by_name: dict = {}
    ops = [by_name.setdefault(n, x) for n, x in zip(d.names, ops)]
    out = np.einsum(equation, *ops)
    cot = np.random.default_rng(2).standard_normal(out.shape)
    want = jax_vjp(equation, ops, cot)
    distinct = list(by_name)
    summed = [sum(w for w, n in zip(want, d.names) if n == name) for name in distinct]
    return d, [by_name[n] for n in distinct], cot, out, summed


def _run(target, fn, operands, cot):
    """The forward output and the gradients of ``fn`` (an export entry point) at ``cot``."""
    if target == "numpy":
        return None, fn(cot, *operands)
    if target == "jax":
        import jax
        import jax.numpy as jnp

        with jax.enable_x64(True):
            out, pullback = jax.vjp(fn, *(jnp.asarray(x) for x in operands))
            grads = pullback(jnp.asarray(cot))
            return np.asarray(out), [np.asarray(g) for g in grads]
    import torch

    xs = [torch.tensor(x, requires_grad=True) for x in operands]
    out = fn(*xs)
    out.backward(torch.tensor(cot))
    return out.detach().numpy(), [x.grad.numpy() for x in xs]


@pytest.mark.parametrize("naive", [False, True], ids=["joint", "naive"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("equation,shapes,names", HARD_CASES, ids=IDS)
def test_export_equals_jax_vjp(equation, shapes, names, target, naive):
    if target == "torch":
        pytest.importorskip("torch")
    d, operands, cot, out, want = _problem(equation, shapes, names)
    got_out, got = _run(target, compiled(d, target, naive=naive), operands, cot)
    assert_grads_equal(got, want)
    if got_out is not None:
        np.testing.assert_allclose(got_out, out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "jax"])
def test_derivation_methods_run_what_export_shows(target):
    d = derive("ijji,kji,jj->kj", shapes=((2, 3, 3, 2), (4, 3, 2), (3, 3)))
    assert d.export(target) == export(d, target)
    fn = d.compile(target)
    assert fn is d.compile(target)                        # cached
    assert fn is compiled(d, target)
    parts = [fn] if target == "numpy" else [fn.fun, fn.fwd, fn.bwd]   # custom_vjp's pieces
    for part in parts:
        assert inspect.getsource(part) in d.export(target)   # the code that runs is the code shown


@pytest.mark.parametrize("target", list(TARGETS))
def test_source_is_self_contained(target):
    d = derive("ijji,kji,jj->kj", shapes=((2, 3, 3, 2), (4, 3, 2), (3, 3)))
    tree = ast.parse(export(d, target))
    body = tree.body
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)   # docstring
    imports = [i for i, node in enumerate(body) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports == list(range(1, len(imports) + 1)), "imports come first, and only there"
    nested = [n for node in body[1 + len(imports):] for n in ast.walk(node)
              if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not nested
    modules = {alias.name for i in imports for alias in body[i].names}
    assert modules == {"numpy": {"numpy"}, "jax": {"jax", "jax.numpy"}, "torch": {"torch"}}[target]


def _code(source: str) -> str:
    """The source without its docstrings (where the derived einsums are quoted)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            body.pop(0)
    return ast.unparse(tree)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("equation,shapes", [("ii->", [(3, 3)]), ("ijk->j", [(2, 3, 4)]),
                                             ("ijji,kji,jj->kj", [(2, 3, 3, 2), (4, 3, 2), (3, 3)])])
def test_joint_export_never_builds_eye_or_ones(equation, shapes, target):
    d = derive(equation, shapes=shapes)
    assert any(g.aux for g in d.grads)
    joint, naive = _code(export(d, target)), _code(export(d, target, naive=True))
    assert "eye(" not in joint and "ones(" not in joint
    assert "eye(" in naive or "ones(" in naive


def test_numpy_export_shares_the_cotangent_contraction():
    """ij,jk,kl->il: dL_dC . C^T is computed once and used by dL_dA and dL_dB (one line each)."""
    d = derive("ij,jk,kl->il", shapes=((2, 30), (30, 3), (3, 40)))
    body = [line.strip() for line in _code(d.export("numpy")).splitlines()]
    einsums = [line for line in body if "np.einsum(" in line]
    assert len(einsums) == 1 + 4       # the recomputed forward intermediate, then 2 x 2 swaps
    shared = [line.split(" = ")[0] for line in einsums if line.startswith("dL_dT")]
    assert len(shared) == 1
    assert sum(shared[0] in line for line in einsums) == 3    # assigned once, read twice


def test_product_rule_sums_positions():
    d = derive("ij,ij->", names=("A", "A"), shapes=((2, 3), (2, 3)))
    source = _code(d.export("numpy"))
    assert "def backward(dL_dC, A):" in source
    assert source.count("np.einsum(") == 1            # both positions' swap is the same einsum
    A = np.arange(6.0).reshape(2, 3)
    (grad,) = d.compile("numpy")(np.float64(1.5), A)
    np.testing.assert_allclose(grad, 3.0 * A)


def test_shapes_are_named_in_the_source():
    d = derive("ijk->j", shapes=((2, 3, 4),))
    assert "Shapes: A (2, 3, 4) -> B (3,)" in d.export("numpy")


def test_bad_requests_say_what_is_wrong():
    with pytest.raises(EinsumError, match="needs shapes"):
        derive("ij,jk->ik").export("numpy")
    with pytest.raises(EinsumError, match="unknown export target 'tensorflow'"):
        derive("ij,jk->ik", shapes=((2, 3), (3, 4))).export("tensorflow")
    with pytest.raises(EinsumError, match="'ctx' is used by the exported code"):
        derive("ij,jk->ik", names=("ctx", "B"), shapes=((2, 3), (3, 4))).export("torch")


def test_jax_export_composes_with_jit_and_grad():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    d = derive("bi,ij,bj->b", shapes=((4, 3), (3, 5), (4, 5)))
    f = d.compile("jax")
    x, w, y = (jnp.asarray(a, dtype=jnp.float32) for a in random_operands(d.shapes, seed=3))

    def loss(fn, *xs):
        return jnp.sum(fn(*xs) ** 2)

    got = jax.jit(jax.grad(lambda *xs: loss(f, *xs), argnums=(0, 1, 2)))(x, w, y)
    want = jax.grad(lambda *xs: loss(lambda *a: jnp.einsum("bi,ij,bj->b", *a), *xs),
                    argnums=(0, 1, 2))(x, w, y)
    assert_grads_equal([np.asarray(g) for g in got], [np.asarray(g) for g in want],
                       rtol=1e-5, atol=1e-5)


def _complex_operands(shapes, names, seed=5):
    rng = np.random.default_rng(seed)
    by_name: dict = {}
    for n, s in zip(names, shapes):
        by_name.setdefault(n, rng.standard_normal(s) + 1j * rng.standard_normal(s))
    return list(by_name.values())


# gradcheck refuses empty inputs (a stride-0 dimension): nothing to differentiate there.
NONEMPTY = [(case, i) for case, i in zip(HARD_CASES, IDS) if all(0 not in s for s in case[1])]


@pytest.mark.parametrize("naive", [False, True], ids=["joint", "naive"])
@pytest.mark.parametrize("equation,shapes,names", [c for c, _ in NONEMPTY],
                         ids=[i for _, i in NONEMPTY])
def test_torch_export_passes_torch_gradcheck_on_complex(equation, shapes, names, naive):
    """PyTorch's convention (conjugate Wirtinger), held to PyTorch's own gradcheck."""
    torch = pytest.importorskip("torch")
    d = derive(equation, names=names, shapes=shapes)
    fn = compiled(d, "torch", naive=naive)
    xs = tuple(torch.tensor(x, requires_grad=True)
               for x in _complex_operands(shapes, d.names))
    assert all(x.dtype == torch.complex128 for x in xs)
    assert torch.autograd.gradcheck(fn, xs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("naive", [False, True], ids=["joint", "naive"])
@pytest.mark.parametrize("target", ["numpy", "jax"])
@pytest.mark.parametrize("equation,shapes,names", HARD_CASES, ids=IDS)
def test_numpy_and_jax_exports_follow_jax_on_complex(equation, shapes, names, target, naive):
    """JAX's convention (no conjugation), held to jax.vjp of jnp.einsum on complex128."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    d = derive(equation, names=names, shapes=shapes)
    distinct = list(dict.fromkeys(d.names))
    operands = _complex_operands(shapes, d.names)
    out_shape = np.einsum(equation, *[operands[distinct.index(n)] for n in d.names]).shape
    rng = np.random.default_rng(6)
    cot = rng.standard_normal(out_shape) + 1j * rng.standard_normal(out_shape)
    with jax.enable_x64(True):
        xs = [jnp.asarray(x) for x in operands]
        _, pullback = jax.vjp(
            lambda *ys: jnp.einsum(equation, *[ys[distinct.index(n)] for n in d.names]), *xs)
        want = [np.asarray(g) for g in pullback(jnp.asarray(cot))]
        fn = compiled(d, target, naive=naive)
        if target == "numpy":
            got = fn(cot, *operands)
        else:
            _, pull = jax.vjp(fn, *xs)
            got = [np.asarray(g) for g in pull(jnp.asarray(cot))]
    assert all(np.iscomplexobj(g) for g in want)
    assert_grads_equal(got, want)


def test_torch_export_conjugates_and_says_so():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    source = d.export("torch")
    assert "t.conj() for t in ctx.saved_tensors" in source
    assert "PyTorch's convention for complex tensors" in source
    assert "conj" not in _code(d.export("jax")) and "conj" not in _code(d.export("numpy"))
