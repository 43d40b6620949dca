"""How %%einsum_grad runs the cell's code: once, as IPython would, showing what really ran."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic.magic import EinsumGradMagics, load_ipython_extension

NAMES = ("C", "D", "G", "r2", "res", "eq", "density", "Head", "head", "out", "einsum", "t",
         "asyncio", "k", "ok")


@pytest.fixture
def ip():
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    shell.run_cell("import numpy as np\nA = np.arange(6.0).reshape(2, 3)\n"
                   "B = np.arange(8.0).reshape(2, 4)")
    yield shell
    for name in NAMES:
        shell.user_ns.pop(name, None)
    magics(shell).max_displays = 20


def magics(shell) -> EinsumGradMagics:
    (m,) = [c for c in shell.configurables if isinstance(c, EinsumGradMagics)]
    return m


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def shown(cap) -> list[str]:
    """The text/plain of each einsum's display (its verdict line first, then where it is)."""
    return [o.data["text/plain"] for o in cap.outputs if "text/plain" in o.data
            and o.data["text/plain"].splitlines()[1:2]
            and o.data["text/plain"].splitlines()[1].startswith("einsum_grad")]


def shapes(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("shapes:"))


def test_the_run_hooks_fire_once_per_magic_cell(ip):
    seen = []

    def pre(info):
        seen.append(("pre", info.raw_cell.splitlines()[0]))

    def post(result):
        seen.append(("post", result.info.raw_cell.splitlines()[0]))

    ip.events.register("pre_run_cell", pre)
    ip.events.register("post_run_cell", post)
    try:
        result, _ = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij->j', A)")
    finally:
        ip.events.unregister("pre_run_cell", pre)
        ip.events.unregister("post_run_cell", post)
    assert result.success
    assert seen == [("pre", "%%einsum_grad --no-check"), ("post", "%%einsum_grad --no-check")]


def test_a_cell_with_top_level_await_runs_under_the_magic(ip):
    result, cap = run(ip, "%%einsum_grad --no-check\nimport asyncio\nawait asyncio.sleep(0.01)\n"
                          "C = np.einsum('ij->j', A)\nC.shape")
    assert result.success, cap.stdout
    assert result.result == (3,)
    (out,) = shown(cap)
    assert shapes(out) == "shapes:  A (2, 3) -> C (3,)  (from the run)"


def test_the_last_expression_is_displayed_and_stored_as_without_the_magic(ip):
    plain, plain_cap = run(ip, "np.einsum('ij->j', A)")
    plain_out = {k: ip.user_ns.get(k) for k in ("_", "__")}
    result, cap = run(ip, "%%einsum_grad --no-check\nnp.einsum('ij->j', A)")
    assert result.success
    np.testing.assert_array_equal(result.result, np.arange(6.0).reshape(2, 3).sum(0))
    np.testing.assert_array_equal(result.result, plain.result)
    assert cap.stdout.startswith(plain_cap.stdout)
    if plain_out["_"] is not None:             # the displayhook's cache, where it is on
        np.testing.assert_array_equal(ip.user_ns["_"], plain.result)
        assert ip.user_ns["__"] is plain_out["_"]


@pytest.mark.parametrize("guard", ["if False:\n    ", "try:\n    {}\nexcept ValueError:\n    pass"])
def test_an_einsum_that_never_completes_never_fails_the_cell(ip, guard):
    """Its operands' shapes clash (A is 2x3): the cell runs fine, so the magic must too."""
    call = "np.einsum('ij,jk->ik', A, A)"
    body = guard.format(call) if "{}" in guard else guard + call
    result, cap = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij->j', A)\n" + body)
    assert result.success, cap.stdout
    assert len(shown(cap)) == 1
    assert "did not run (or raised); not analysed" in cap.stdout


def test_the_cells_own_einsum_is_said_to_be_unknown_not_unrun(ip):
    """A bare ``einsum`` the cell defines ran, and was said to have not run."""
    result, cap = run(ip, "%%einsum_grad --no-check\ndef einsum(spec, *ops):\n    return ops[0]\n"
                          "X = einsum('whatever goes here', A)\nD = np.einsum('ij->ji', A)")
    assert result.success, cap.stdout
    assert len(shown(cap)) == 1
    assert ("line 3: einsum('whatever goes here', A): einsum is the cell's own function "
            "(line 1), which einsum_magic does not know; not analysed") in cap.stdout
    assert "did not run" not in cap.stdout
    for name in ("einsum", "X", "D"):
        ip.user_ns.pop(name, None)


def test_a_bad_literal_equation_is_a_usage_error_before_the_run_unless_in_a_try(ip):
    result, _ = run(ip, "%%einsum_grad\nok = 1\nnp.einsum('ij,j1->i', A, A)")
    assert type(result.error_in_exec) is UsageError and "ok" not in ip.user_ns
    result, cap = run(ip, "%%einsum_grad --no-check\ntry:\n    np.einsum('ij,j1->i', A, A)\n"
                          "except ValueError:\n    ok = 1\n")
    assert result.success and ip.user_ns["ok"] == 1
    assert "inside a try block, did not run (or raised); not analysed (its equation: " \
        "'1' is not a subscript letter" in cap.stdout


def test_the_gram_matrix_in_a_function_shows_its_real_shapes(ip):
    """The issue's density() example: it failed the whole cell after its code ran."""
    result, cap = run(ip, "%%einsum_grad -o res\ndef density(C):\n"
                          "    return np.einsum('pi,qi->pq', C, C)\n"
                          "X = np.arange(12.0).reshape(4, 3)\nD = density(X)")
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: np.einsum('pi,qi->pq', C, C)  (density(), line 2)"
    assert shapes(out) == "shapes:  C (4, 3), C (4, 3) -> out (4, 4)  (from the run)"
    assert "product rule: dL_dC = dL_dC_1 + dL_dC_2" in out
    assert out.splitlines()[-1].startswith("check: PASS")
    assert ip.user_ns["res"].report.user_arrays      # checked on the array the call received
    ip.user_ns.pop("X", None)


def test_an_expression_operand_shows_the_array_it_evaluated_to(ip):
    """``B.T`` with B 2x4: the issue's r2 was shown (3, 4) while the real one is 4x4."""
    _, cap = run(ip, "%%einsum_grad --no-check\nr2 = np.einsum('ij,jk->ik', B.T, B)")
    (out,) = shown(cap)
    assert shapes(out) == "shapes:  op1 (4, 2), B (2, 4) -> r2 (4, 4)  (from the run)"
    assert "  op1 = B.T" in out.splitlines()


def test_a_method_of_a_class_is_shown_where_it_is_with_its_parameter_names(ip):
    _, cap = run(ip, "%%einsum_grad --no-check\nclass Head:\n    def __init__(self, d):\n"
                     "        self.W = np.ones((d, 5))\n    def __call__(self, x):\n"
                     "        return np.einsum('td,de->te', x, self.W)\n"
                     "head = Head(3)\nout = head(np.ones((7, 3)))")
    (out,) = shown(cap)
    assert out.splitlines()[1].endswith("(Head.__call__(), line 5)")
    assert shapes(out) == "shapes:  x (7, 3), op2 (3, 5) -> C (7, 5)  (from the run)"


def test_a_loop_is_one_display_that_counts_its_runs(ip):
    _, cap = run(ip, "%%einsum_grad --no-check\nfor k in range(1, 4):\n"
                     "    G = np.einsum('ij,kj->ik', np.ones((k, 2)), np.ones((k, 2)))")
    (out,) = shown(cap)
    assert shapes(out) == ("shapes:  op1 (1, 2), op2 (1, 2) -> G (1, 1)  (from the run; ran 3 "
                           "times with 3 different shapes, showing the first call's)")


def test_equations_built_at_run_time_and_unpacked_operands_are_seen(ip):
    _, cap = run(ip, "%%einsum_grad --no-check\nops = [A, A.T]\nfor eq in ['ij,jk->ik', "
                     "'ij,jk->ki']:\n    res = np.einsum(f'{eq}', *ops)")
    first, second = shown(cap)
    assert first.splitlines()[1] == ("einsum_grad: np.einsum('ij,jk->ik', A, op2)  "
                                     "(einsum 1 of 2, line 3)")
    assert shapes(first) == "shapes:  A (2, 3), op2 (3, 2) -> C (2, 2)  (from the run)"
    assert "forward: C = np.einsum('ij,jk->ki', A, op2)" in second.splitlines()
    ip.user_ns.pop("ops", None)


def test_the_cap_shows_the_first_sites_and_counts_the_rest(ip):
    magics(ip).max_displays = 2
    _, cap = run(ip, "%%einsum_grad --no-check\n" + "\n".join(
        f"np.einsum('ij->{out}', A)" for out in ("i", "j", "", "ji")))
    assert len(shown(cap)) == 2
    assert "einsum_grad: 2 more einsum call sites ran; the first 2 are shown " \
           "(EinsumGradMagics.max_displays)" in cap.stdout


def test_a_bare_einsum_of_an_unknown_library_is_not_analysed(ip):
    ip.run_cell("def einsum(spec, *xs):\n    return np.einsum('ij,j->i', *xs)")
    ip.user_ns["einsum"].__module__ = "fancy_einsum"
    result, cap = run(ip, "%%einsum_grad --no-check\nt = einsum('batch pos, pos -> batch', "
                          "np.ones((2, 3)), np.ones(3))")
    assert result.success, cap.stdout
    assert "einsum is fancy_einsum.einsum, which einsum_magic does not know; not analysed" \
        in cap.stdout
    (out,) = shown(cap)                 # the numpy einsum it calls did run, and is shown
    assert "(einsum() of cell [" in out.splitlines()[1]


def test_a_jitted_function_shows_the_traced_shapes(ip):
    pytest.importorskip("jax")
    _, cap = run(ip, "%%einsum_grad --no-check\nimport jax, jax.numpy as jnp\n"
                     "f = jax.jit(lambda x, y: jnp.einsum('ij,jk->ik', x, y))\n"
                     "C = f(np.ones((2, 3)), np.ones((3, 4)))")
    (out,) = shown(cap)
    assert shapes(out).startswith("shapes:  x (2, 3), y (3, 4) -> ")
    assert "traced by JAX" in shapes(out)
    for name in ("f", "jax", "jnp"):
        ip.user_ns.pop(name, None)


def test_results_and_names_are_as_without_the_magic(ip):
    cell = "C = np.einsum('ij,kj->ik', A, A)\nes = np.einsum\nD = es('ii->i', C)"
    ip.run_cell(cell)
    plain = {k: ip.user_ns[k] for k in ("C", "D")}
    result, _ = run(ip, "%%einsum_grad --no-check\n" + cell)
    assert result.success
    for k, v in plain.items():
        np.testing.assert_array_equal(ip.user_ns[k], v)
    assert ip.user_ns["es"] is np.einsum and np.einsum.__module__ == "numpy"
    ip.user_ns.pop("es", None)


def test_an_einsum_in_library_code_says_where_and_uses_the_parameter_names(ip, tmp_path,
                                                                           monkeypatch):
    package = tmp_path / "attnlib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text(
        "import numpy as np\n\n"
        "def scores(query, key):\n"
        "    return np.einsum('qd,kd->qk', query, key)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result, cap = run(ip, "%%einsum_grad --no-check\nfrom attnlib.layers import scores\n"
                          "S = scores(np.ones((2, 4)), np.ones((3, 4)))")
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert out.splitlines()[1] == ("einsum_grad: np.einsum('qd,kd->qk', query, key)  "
                                   "(scores() in attnlib/layers.py:4)")
    assert shapes(out) == "shapes:  query (2, 4), key (3, 4) -> C (2, 3)  (from the run)"
    ip.user_ns.pop("scores", None)
    ip.user_ns.pop("S", None)


# -- observing leaves no trace (compiled code, escaped wrappers, threads, the package itself) --

def test_a_torchscript_function_runs_under_the_magic_as_without_it(ip):
    """torch.jit.script resolved torch.einsum to the observing wrapper: NotSupportedError."""
    torch = pytest.importorskip("torch")
    cell = ("import torch\n@torch.jit.script\ndef f(a, b):\n"
            "    return torch.einsum('ij,jk->ik', a, b)\nT = f(torch.ones(2, 3), torch.ones(3, 4))")
    result, cap = run(ip, "%%einsum_grad --no-check\n" + cell)
    assert result.success, cap.stdout
    assert torch.equal(ip.user_ns["T"], torch.full((2, 4), 3.0))
    assert "did not run (or raised); not analysed" not in cap.stdout   # it ran, as TorchScript
    assert ("or ran inside TorchScript, where torch.einsum calls are not observed; not analysed"
            in cap.stdout)
    for name in ("f", "T", "torch"):
        ip.user_ns.pop(name, None)


def test_torch_compile_is_shown_at_the_cells_own_line(ip):
    """It was shown at run_node() in torch/_dynamo/utils.py, and the cell's line 'did not run'."""
    torch = pytest.importorskip("torch")
    result, cap = run(ip, "%%einsum_grad --no-check\nimport torch\ndef g(x, y):\n"
                          "    return torch.einsum('ij,jk->ik', x, y) * 2\ncg = torch.compile(g)\n"
                          "T = cg(torch.ones(2, 3), torch.ones(3, 4))\n"
                          "T = T + cg(torch.ones(2, 3), torch.ones(3, 4))")
    assert result.success, cap.stdout
    assert torch.equal(ip.user_ns["T"], torch.full((2, 4), 12.0))
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: torch.einsum('ij,jk->ik', x, y)  (g(), line 3)"
    # traced once; where the cell backward's record breaks the graph, it also runs in Python:
    # then its runs are counted (two calls of cg), never the trace on top of them
    assert re.match(r"shapes:  x \(2, 3\), y \(3, 4\) -> C \(2, 4\)  \(from the run; "
                    r"(ran 2 times; )?traced by torch.compile", shapes(out)), shapes(out)
    assert "_dynamo" not in cap.stdout and "did not run" not in cap.stdout
    for name in ("g", "cg", "T", "torch"):
        ip.user_ns.pop(name, None)


def test_a_library_that_bound_einsum_by_name_before_the_cell_is_observed(ip, tmp_path,
                                                                          monkeypatch):
    """``from numpy import einsum`` / ``from torch import nn, einsum`` in a module imported
    before the cell: its calls were not seen ("no einsum call found in the cell"). During
    the cell they are; after it the module holds numpy's and torch's own functions again."""
    import pickle

    torch = pytest.importorskip("torch")
    (tmp_path / "a_library.py").write_text(
        "from numpy import einsum\nfrom torch import nn, einsum as _unused\n"
        "from torch import einsum as teinsum\n"
        "def mm(a, b):\n    return einsum('ij,jk->ik', a, b)\n")
    (tmp_path / "a_torch_library.py").write_text(
        "from torch import nn, einsum\ndef mm(a, b):\n    return einsum('ij,jk->ik', a, b)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ip.run_cell("import a_library, a_torch_library, torch")
    result, cap = run(ip, "%%einsum_grad\nC = a_library.mm(A, B.T[:3])\n"
                          "T = a_torch_library.mm(torch.ones(2, 3), torch.ones(3, 4))")
    assert result.success, cap.stdout
    heads = [out.splitlines()[:2] for out in shown(cap) if out.startswith("check")]
    assert heads == [["check PASS", "einsum_grad: np.einsum('ij,jk->ik', a, b)  "
                      "(einsum 1 of 2, mm() in a_library.py:5)"],
                     ["check PASS", "einsum_grad: torch.einsum('ij,jk->ik', a, b)  "
                      "(einsum 2 of 2, mm() in a_torch_library.py:3)"]]
    assert "no einsum call found" not in cap.stdout
    library, torch_library = sys.modules["a_library"], sys.modules["a_torch_library"]
    assert library.einsum is np.einsum and torch_library.einsum is torch.einsum
    assert pickle.loads(pickle.dumps(library.einsum)) is np.einsum
    for name in ("a_library", "a_torch_library"):
        sys.modules.pop(name, None)
    for name in ("a_library", "a_torch_library", "torch", "C", "T"):
        ip.user_ns.pop(name, None)


def test_a_compiled_function_the_cell_does_not_call_leaves_numpy_recorded(ip):
    """A function torch.compile made in an earlier cell turned NumPy's record off in every
    later cell ("not recorded: the cell runs code compiled by torch.compile")."""
    pytest.importorskip("torch")
    ip.run_cell("import torch\ncf = torch.compile(lambda x: x.sin())")
    result, cap = run(ip, "%%einsum_grad --no-check -o res\nH = np.tanh(A @ B.T[:3])\n"
                          "L = H.sum()  # not torch.compile")
    assert result.success, cap.stdout
    assert "not recorded" not in cap.stdout
    assert ip.user_ns["res"].backward.sinks == ("L",)
    for name in ("cf", "torch", "res", "H", "L"):
        ip.user_ns.pop(name, None)


def test_a_table_keyed_by_np_einsum_finds_it_in_the_cell_and_after(ip):
    """An ``__array_function__`` protocol that looks ``func`` up in a dict keyed by
    ``np.einsum`` (made in the cell: keyed by the stand-in) found nothing (TypeError: no
    implementation found), in the cell and after it; ``np.einsum._implementation`` raised."""
    cell = """\
HANDLED = {}
class Wrapped:
    def __init__(self, a):
        self.a = np.asarray(a)
    def __array_function__(self, func, types, args, kwargs):
        if func not in HANDLED:
            return NotImplemented
        return HANDLED[func](*args, **kwargs)
HANDLED[np.einsum] = lambda eq, x, y: Wrapped(np.einsum(eq, x.a, y.a))
R = np.einsum('ij,jk->ik', Wrapped(np.ones((2, 3))), Wrapped(np.ones((3, 4))))
implementation = np.einsum._implementation
"""
    result, cap = run(ip, "%%einsum_grad --no-check\n" + cell)
    assert result.success, cap.stdout
    assert ip.user_ns["R"].a.shape == (2, 4)
    assert ip.user_ns["implementation"] is np.einsum._implementation
    after, _ = run(ip, "R = np.einsum('ij,jk->ik', Wrapped(np.ones((2, 3))), Wrapped(np.ones((3, 4))))")
    assert after.success and ip.user_ns["R"].a.shape == (2, 4)
    (key,) = ip.user_ns["HANDLED"]
    assert key == np.einsum and hash(key) == hash(np.einsum) and key is not np.einsum
    for name in ("HANDLED", "Wrapped", "R", "implementation"):
        ip.user_ns.pop(name, None)


FULLGRAPH = """\
graphs = []
def backend(gm, example_inputs):
    graphs.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
    return gm.forward
@torch.compile(fullgraph=True, backend=backend)
def f(x, y):
    return torch.einsum('ij,jk->ik', x, y).sum()
@torch.compile(fullgraph=True, backend="eager")
def g(a, b):
    return np.einsum('ij,jk->ik', a, b)
T = f(torch.ones(2, 3), torch.ones(3, 4))
N = g(np.ones((2, 3)), np.ones((3, 4)))
"""


def test_a_fullgraph_compile_compiles_the_users_graph_as_without_the_magic(ip):
    """Dynamo traced the cell backward's recorders: torch's mode (``str.startswith``: not
    supported) and NumPy's boxed arrays (not arrays to Dynamo), so ``fullgraph=True`` failed
    under the magic and a plain compile got the recorder's graphs."""
    torch = pytest.importorskip("torch")
    ip.run_cell("import torch")
    plain, _ = run(ip, FULLGRAPH)
    assert plain.success
    want = ip.user_ns["graphs"]
    torch._dynamo.reset()
    result, cap = run(ip, "%%einsum_grad --no-check\n" + FULLGRAPH)
    assert result.success, cap.stdout
    assert ip.user_ns["graphs"] == want and len(want) == 1         # the user's graph, once
    assert float(ip.user_ns["T"]) == 24.0 and ip.user_ns["N"].shape == (2, 4)
    lines = [out.splitlines()[1] for out in shown(cap) if out.startswith("check")]
    assert lines == ["einsum_grad: torch.einsum('ij,jk->ik', x, y)  (einsum 1 of 2, f(), line 7)",
                     "einsum_grad: np.einsum('ij,jk->ik', a, b)  (einsum 2 of 2, g(), line 10)"]
    torch._dynamo.reset()
    for name in ("graphs", "backend", "f", "g", "T", "N", "torch"):
        ip.user_ns.pop(name, None)


def test_inside_the_cell_the_einsum_functions_look_like_the_originals(ip):
    """inspect.signature(np.einsum) was (*args, **kwargs) inside the cell; jax.jit still traces."""
    import inspect

    jnp = pytest.importorskip("jax.numpy")
    oe = pytest.importorskip("opt_einsum")
    originals = {"np": np.einsum, "jnp": jnp.einsum, "oe": oe.contract}
    result, cap = run(ip, "%%einsum_grad --no-check\nimport inspect, jax, jax.numpy as jnp, "
                          "opt_einsum as oe\nsigs = {k: str(inspect.signature(f)) for k, f in "
                          "[('np', np.einsum), ('jnp', jnp.einsum), ('oe', oe.contract)]}\n"
                          "wrapped = np.einsum is not inspect.unwrap(np.einsum)\n"
                          "f = jax.jit(lambda x: jnp.einsum('ij,kj->ik', x, x))\nG = f(A)")
    assert result.success, cap.stdout
    assert ip.user_ns["wrapped"]                                  # observed while it ran
    assert ip.user_ns["sigs"] == {k: str(inspect.signature(f)) for k, f in originals.items()}
    np.testing.assert_allclose(np.asarray(ip.user_ns["G"]), np.einsum("ij,kj->ik", *[
        ip.user_ns["A"]] * 2), rtol=1e-6)
    assert "'ij,kj->ik'" in shown(cap)[0].splitlines()[1]
    for name in ("sigs", "wrapped", "f", "G", "jax", "jnp", "oe", "inspect"):
        ip.user_ns.pop(name, None)


def test_an_einsum_that_escapes_the_cell_pickles_as_the_original_and_calls_through(ip, tmp_path,
                                                                                 monkeypatch):
    """pickle.dumps(functools.partial(np.einsum, …)) made in the cell raised PicklingError."""
    import pickle

    from einsum_magic.cell.capture import original_of

    (tmp_path / "escaping_mod.py").write_text("from numpy import einsum\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result, cap = run(ip, "%%einsum_grad --no-check\nimport functools, escaping_mod\n"
                          "p = functools.partial(np.einsum, 'ij,kj->ik')\nkept = [np.einsum]\n"
                          "C = p(A, A)")
    assert result.success, cap.stdout
    p, kept, mod = ip.user_ns["p"], ip.user_ns["kept"], sys.modules["escaping_mod"]
    escaped = [p.func, kept[0], mod.einsum]
    assert all(f is not np.einsum for f in escaped)        # they did escape the cell
    assert pickle.loads(pickle.dumps(p)).func is np.einsum
    assert pickle.loads(pickle.dumps(kept)) == [np.einsum]
    for f in escaped:                                      # each now calls numpy straight through
        assert pickle.loads(pickle.dumps(f)) is np.einsum
        assert original_of(f) is np.einsum and f.func is np.einsum
    A = ip.user_ns["A"]
    np.testing.assert_array_equal(p(A, A), A @ A.T)
    np.testing.assert_array_equal(mod.einsum("ij->j", A), A.sum(0))
    for name in ("p", "kept", "functools", "escaping_mod"):
        ip.user_ns.pop(name, None)
    sys.modules.pop("escaping_mod", None)


@pytest.mark.parametrize("spawn", [
    "from concurrent.futures import ThreadPoolExecutor\nwith ThreadPoolExecutor(2) as pool:\n"
    "    outs = list(pool.map(work, [A, A]))",
    "import threading\nt = threading.Thread(target=work, args=(A,))\nt.start()\nt.join()"])
def test_einsums_in_other_threads_are_shown_and_said_to_be_from_another_thread(ip, spawn):
    """They were missed, and the note said the call 'did not run'."""
    result, cap = run(ip, "%%einsum_grad --no-check\ndef work(x):\n"
                          "    return np.einsum('ij,kj->ik', x, x)\n" + spawn)
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: np.einsum('ij,kj->ik', x, x)  (work(), line 2)"
    assert shapes(out).startswith("shapes:  x (2, 3), x (2, 3) -> C (2, 2)  (from the run, in "
                                  "another thread")
    assert "did not run" not in cap.stdout
    for name in ("work", "pool", "outs", "t", "threading", "ThreadPoolExecutor"):
        ip.user_ns.pop(name, None)


def test_the_magic_written_twice_never_shows_its_own_einsums(ip):
    """The outer magic observed the inner one's check (_numpy_einsum() in einsum_magic/…)."""
    result, cap = run(ip, "%%einsum_grad\n%%einsum_grad\nC = np.einsum('ij,kj->ik', A, A)")
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: np.einsum('ij,kj->ik', A, A)  (line 1)"
    assert out.splitlines()[0] == "check PASS"
    assert "einsum_magic" not in cap.stdout + "".join(
        o.data.get("text/plain", "") for o in cap.outputs)


def test_a_contract_expression_is_shown_like_oe_contract(ip):
    """oe.contract_expression('ij,jk->ik', …)(A, B) was not seen: 'no einsum call found'."""
    oe = pytest.importorskip("opt_einsum")
    call = sys.modules["opt_einsum.contract"].ContractExpression.__call__
    result, cap = run(ip, "%%einsum_grad --no-check\nimport opt_einsum as oe\n"
                          "expr = oe.contract_expression('ij,kj->ik', (2, 3), (2, 3))\n"
                          "G = expr(A, A)")
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: oe.contract('ij,kj->ik', A, A)  (line 3)"
    assert shapes(out).startswith("shapes:  A (2, 3), A (2, 3) -> ")
    A = ip.user_ns["A"]
    np.testing.assert_allclose(ip.user_ns["G"], A @ A.T)
    assert sys.modules["opt_einsum.contract"].ContractExpression.__call__ is call
    np.testing.assert_allclose(ip.user_ns["expr"](A, A), A @ A.T)    # after the cell: as before
    for name in ("oe", "expr", "G"):
        ip.user_ns.pop(name, None)


def test_torch_einsums_in_other_threads_are_shown(ip):
    """They were 'not seen running' (torch was observed on the cell's thread only)."""
    torch = pytest.importorskip("torch")
    result, cap = run(ip, "%%einsum_grad --no-check\nimport torch\ndef work(x):\n"
                          "    return torch.einsum('ij,kj->ik', x, x)\n"
                          "from concurrent.futures import ThreadPoolExecutor\n"
                          "with ThreadPoolExecutor(2) as pool:\n"
                          "    outs = list(pool.map(work, [torch.ones(2, 3)] * 2))")
    assert result.success, cap.stdout
    assert all(torch.equal(o, torch.full((2, 2), 3.0)) for o in ip.user_ns["outs"])
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: torch.einsum('ij,kj->ik', x, x)  (work(), line 3)"
    assert shapes(out).startswith("shapes:  x (2, 3), x (2, 3) -> C (2, 2)  (from the run, in "
                                  "another thread")
    assert "not seen running" not in cap.stdout
    for name in ("work", "pool", "outs", "torch", "ThreadPoolExecutor"):
        ip.user_ns.pop(name, None)


def test_a_thread_that_calls_after_the_cell_ends_is_not_said_to_not_run(ip):
    """A thread the cell started and that calls einsum after the cell: 'did not run'."""
    result, cap = run(ip, "%%einsum_grad --no-check\nimport threading\n"
                          "go = threading.Event()\ndef later():\n    go.wait()\n"
                          "    np.einsum('ij,kj->ik', A, A)\n"
                          "worker = threading.Thread(target=later)\nworker.start()\n"
                          "D = np.einsum('ij->ji', A)")
    ip.run_cell("go.set(); worker.join()")
    assert result.success, cap.stdout
    assert ("line 5: np.einsum('ij,kj->ik', A, A): did not run while the cell ran (or raised); "
            "a thread the cell started may run it later, when calls are no longer observed; "
            "not analysed") in cap.stdout
    for name in ("threading", "go", "later", "worker", "D"):
        ip.user_ns.pop(name, None)


def test_in_a_kernel_einsums_in_other_threads_are_shown(tmp_path):
    """In Jupyter, as in the shell: a worker thread's einsum is shown, never 'did not run'."""
    pytest.importorskip("torch")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "%load_ext einsum_magic\n%config EinsumGradMagics.view = 'text'\n"
        "import numpy as np, torch, threading\nA = np.ones((2, 3))"),
        nbformat.v4.new_code_cell(
            "%%einsum_grad --no-check\nfrom concurrent.futures import ThreadPoolExecutor\n"
            "def work(x):\n    return np.einsum('ij,kj->ik', x, x)\n"
            "def twork(x):\n    return torch.einsum('ij,jk->ik', x, x.T)\n"
            "t = threading.Thread(target=work, args=(A,))\nt.start()\nt.join()\n"
            "with ThreadPoolExecutor(1) as pool:\n    T = pool.submit(twork, torch.ones(2, 3))"
            ".result()")]
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    texts = [o.get("data", {}).get("text/plain", "") + o.get("text", "")
             for o in nb.cells[1].outputs]
    heads = [t.splitlines()[1] for t in texts if t.count("\n") > 1
             and t.splitlines()[1].startswith("einsum_grad:")]
    assert heads == ["einsum_grad: np.einsum('ij,kj->ik', x, x)  (einsum 1 of 2, work(), line 3)",
                     "einsum_grad: torch.einsum('ij,jk->ik', x, x.T)  (einsum 2 of 2, twork(), "
                     "line 5)"]
    assert sum("(from the run, in another thread" in t for t in texts) == 2
    assert not any("did not run" in t or "not seen running" in t for t in texts)
