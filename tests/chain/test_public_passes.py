"""The cell backward on forward passes from public code (tests/chain/passes.py), run as a user does.

Each case runs in a real IPython shell: its setup as a plain cell, then the cell once plainly
and once under ``%%einsum_grad -o r``. The properties, one test each:

* every gradient the case names, from ``r.backward.gradients()`` and ``r.backward.grad_of(obj)``,
  equals the framework's own autodiff of the same code computed here independently (torch.autograd
  on a separate run of the cell, ``jax.vjp`` of the cell, or a torch re-writing of a NumPy cell),
  in float64, within rtol 1e-6 of the case's gradient scale;
* ``r.backward.code`` pasted into the next cell (with ``dL_d<sink>`` defined for a non-scalar sink)
  runs and assigns the same gradients;
* the check passes and its summary says PASS, or, for a case with an operation without a rule,
  says PARTIAL and names it, never PASS, and what crosses it is not derived;
* the cell's values and printed output are those of a plain run.

Cotangents: a scalar sink takes 1 (the default of ``gradients()``); a non-scalar one a seeded
random array, passed as ``{sink name: array}``. Values the cell computes that nothing reads
(running statistics, a hand-derived ``dW``) take no cotangent of their own.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import traceback

import numpy as np
import pytest
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

import makemore  # noqa: E402
import passes  # noqa: E402

from einsum_magic.magic import load_ipython_extension  # noqa: E402

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = jax.numpy

RTOL = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")
IDS = [c.name for c in passes.CASES]

#: What the record does not derive yet, case by case: strict expected failures, so that each
#: turns into a failing test the day it is fixed (and must leave this table then).
KNOWN: dict = {}


def cases(prop: str, names) -> list:
    """``names`` as parameters, those of :data:`KNOWN` as strict xfails."""
    out = []
    for name in names:
        reason = KNOWN.get((prop, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# -- the shell -----------------------------------------------------------------------------

@functools.cache
def shell():
    globalipapp.start_ipython()
    ip = globalipapp.get_ipython()
    load_ipython_extension(ip)
    ip.run_cell("pass")
    # IPython's own names (In, Out, get_ipython, _i1, ...), not what other tests left behind
    return ip, frozenset(n for n in ip.user_ns if n in ip.user_ns_hidden or n.startswith("_"))


def fresh_names(ip):
    """Remove every name the shell did not start with."""
    baseline = shell()[1]
    for name in [n for n in ip.user_ns if n not in baseline]:
        del ip.user_ns[name]


def fresh(case):
    """The shell with only its own names, the case's setup run plainly in it."""
    ip, _ = shell()
    fresh_names(ip)
    result = ip.run_cell(case.setup)
    result.raise_error()
    if case.prepare is not None:
        ip.user_ns.update(case.prepare())
    return ip


def x64(case):
    return jax.enable_x64(True) if case.framework == "jax" else contextlib.nullcontext()


def numpy_of(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def assigned_once(cell: str) -> set[str]:
    """Names the cell binds exactly once, at its top level and outside loops."""
    counts: dict[str, int] = {}
    for node in ast.walk(ast.parse(cell)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            counts[node.id] = counts.get(node.id, 0) + 1
        elif isinstance(node, (ast.For, ast.While, ast.FunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                    counts[inner.id] = counts.get(inner.id, 0) + 2
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            counts[node.target.id] = counts.get(node.target.id, 0) + 1
    return {n for n, k in counts.items() if k == 1}


def simple_names(case) -> list[str]:
    """The ``wrt`` entries that are plain names, not rebound in the cell: keys of gradients()."""
    once = assigned_once(case.cell)
    stored = {n.id for n in ast.walk(ast.parse(case.cell))
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return [w for w in case.wrt if w.isidentifier() and (w in once or w not in stored)]


# -- references: the framework's own autodiff, independently of einsum_magic ---------------------

def setup_namespace(case) -> dict:
    ns: dict = {}
    with x64(case):
        exec(compile(case.setup, f"<setup {case.name}>", "exec"), ns)
        if case.prepare is not None:
            ns.update(case.prepare())
    return ns


def cotangent_for(case, sink_value):
    if not case.cotangent:
        return None
    return np.random.default_rng(1234).standard_normal(np.shape(numpy_of(sink_value)))


def torch_reference(case, cot) -> dict:
    ns = setup_namespace(case)
    if case.reference is not None:
        return {k: numpy_of(v) for k, v in case.reference(ns, cot).items()}
    exec(compile(case.cell, f"<reference {case.name}>", "exec"), ns)
    sink = eval(case.sink, ns)
    targets = [eval(w, ns) for w in case.wrt]
    grads = torch.autograd.grad(
        sink, targets, grad_outputs=None if cot is None else torch.as_tensor(cot, dtype=sink.dtype),
        allow_unused=True)
    return {w: numpy_of(torch.zeros_like(t) if g is None else g)
            for w, t, g in zip(case.wrt, targets, grads)}


def numpy_reference(case, cot) -> dict:
    ns = setup_namespace(case)
    t = {}
    for k, v in ns.items():
        if isinstance(v, np.ndarray) and v.dtype.kind in "fc":
            t[k] = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        elif isinstance(v, np.ndarray) and v.dtype.kind in "iub":
            t[k] = torch.tensor(v.astype(np.int64))
    out = case.reference(t, ns)
    sink = out[case.sink]
    targets = [out[w] if w in out else t[w] for w in case.wrt]
    grads = torch.autograd.grad(
        sink, targets, grad_outputs=None if cot is None else torch.as_tensor(cot),
        allow_unused=True)
    return {w: numpy_of(torch.zeros_like(x) if g is None else g)
            for w, x, g in zip(case.wrt, targets, grads)}


def base(expr: str) -> str:
    node = ast.parse(expr, mode="eval").body
    while not isinstance(node, ast.Name):
        node = node.value
    return node.id


def jax_reference(case, cot) -> dict:
    """jax.vjp of the cell itself; intermediates through zero probes added after their binding."""
    ns0 = setup_namespace(case)
    tree = ast.parse(case.cell)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    inner = [w for w in case.wrt if w in bound]
    inputs = sorted({base(w) for w in case.wrt if w not in bound})
    body = []
    for stmt in tree.body:
        body.append(stmt)
        names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Store)} if isinstance(stmt, ast.Assign) else set()
        body += [ast.parse(f"{n} = {n} + __probe__[{n!r}]").body[0] for n in inner if n in names]
    probed = ast.unparse(ast.Module(body=body, type_ignores=[]))
    with jax.enable_x64(True):
        plain = dict(ns0)
        exec(case.cell, plain)
        probes = {n: jnp.zeros(jnp.shape(plain[n])) for n in inner}
        diff = jax.tree_util.tree_map(jnp.asarray, {n: ns0[n] for n in inputs})

        def forward(diff, probes):
            ns = dict(ns0)
            ns.update(diff)
            ns["__probe__"] = probes
            exec(probed, ns)
            return eval(case.sink, ns)

        out, pull = jax.vjp(forward, diff, probes)
        np.testing.assert_allclose(np.asarray(out), np.asarray(eval(case.sink, plain)), rtol=1e-12)
        gdiff, gprobe = pull(jnp.ones_like(out) if cot is None else jnp.asarray(cot))
    return {w: np.asarray(gprobe[w] if w in inner else eval(w, dict(gdiff))) for w in case.wrt}


@functools.cache
def reference(name: str) -> dict:
    case = passes.by_name(name)
    ns = setup_namespace(case)
    with x64(case):
        exec(case.cell, ns)
    cot = cotangent_for(case, eval(case.sink, ns))
    fn = {"torch": torch_reference, "jax": jax_reference, "numpy": numpy_reference}[case.framework]
    return {"cot": cot, "grads": fn(case, cot)}


# -- one session per case: plain run, magic run, gradients, pasted code -------------------------

class Session:
    def __init__(self, case):
        self.case = case
        self.errors: dict[str, str] = {}


def step(session, key):
    """Record an exception of the block under ``key`` (the test of that property re-raises it)."""
    @contextlib.contextmanager
    def guard():
        try:
            yield
        except Exception:  # noqa: BLE001 - reported by the property's own test
            session.errors[key] = traceback.format_exc()
    return guard()


@functools.cache
def session(name: str) -> Session:
    case = passes.by_name(name)
    s = Session(case)
    exprs = (case.sink, *case.wrt, *case.values)
    with x64(case):
        ip = fresh(case)
        with capture_output() as cap:
            ip.run_cell(case.cell)
        s.plain_stdout = cap.stdout
        s.plain_values = {e: numpy_of(eval(e, ip.user_ns)) for e in exprs}

        ip = fresh(case)
        with capture_output() as cap:
            s.result = ip.run_cell(f"%%einsum_grad -o r {case.flags}\n{case.cell}")
        s.stdout, s.outputs = cap.stdout, cap.outputs
        s.magic_values = {}
        for e in exprs:
            with step(s, f"value {e}"):
                s.magic_values[e] = numpy_of(eval(e, ip.user_ns))
        s.r = ip.user_ns.get("r")
        s.backward = getattr(s.r, "backward", None)
        ref = reference(name)
        cots = None if ref["cot"] is None else {case.sink: ref["cot"]}
        s.gradients, s.grad_of = {}, {}
        with step(s, "gradients"):
            s.gradients = {k: v for k, v in s.backward.gradients(cots).items()}
        for w in case.wrt + case.crossing:
            try:
                s.grad_of[w] = ("ok", s.backward.grad_of(eval(w, ip.user_ns), cots))
            except Exception as e:  # noqa: BLE001
                s.grad_of[w] = ("raised", e)
        s.pasted = {}
        with step(s, "pasted"):
            code = s.backward.code
            if ref["cot"] is not None:
                sink = eval(case.sink, ip.user_ns)
                cot = (torch.as_tensor(ref["cot"], dtype=sink.dtype)
                       if isinstance(sink, torch.Tensor) else ref["cot"])
                ip.user_ns[f"dL_d{case.sink}"] = cot
            with capture_output():
                pasted = ip.run_cell(code)
            pasted.raise_error()
            for w in simple_names(case):
                s.pasted[w] = numpy_of(ip.user_ns[s.backward.gradient(w)])
    fresh_names(ip)                      # nothing of the case is left for the next test
    return s


def own_output(stdout: str) -> str:
    """What the cell printed: stdout without the magic's own one-line notes."""
    return "".join(line for line in stdout.splitlines(keepends=True)
                   if not line.startswith("einsum_grad:"))


def close(got, want, scale, what):
    got = numpy_of(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, autodiff {want.shape}"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def scale_of(grads: dict) -> float:
    return max([float(np.max(np.abs(g))) for g in grads.values() if g.size] + [1e-12])


def derived(case):
    return [w for w in case.wrt if w not in case.crossing]


# -- the properties ------------------------------------------------------------------------------

def test_at_least_thirty_public_passes_cover_the_three_frameworks():
    public = [c for c in passes.CASES if not c.source.startswith("issue 18")]
    assert len(public) >= 30
    assert {c.framework for c in public} == {"torch", "jax", "numpy"}
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("name", [c.name for c in passes.CASES if c.framework == "numpy"])
def test_numpy_references_rewrite_the_same_forward(name):
    """The hand-written torch forward of a NumPy cell gives the cell's own values."""
    case = passes.by_name(name)
    ns = setup_namespace(case)
    t = {k: torch.tensor(v) for k, v in ns.items() if isinstance(v, np.ndarray)}
    t = {k: v.long() if not v.is_floating_point() else v for k, v in t.items()}
    out = case.reference(t, dict(ns))
    plain = setup_namespace(case)
    with capture_output():
        exec(case.cell, plain)
    for k, v in out.items():
        np.testing.assert_allclose(numpy_of(v), np.asarray(plain[k]), rtol=1e-12, atol=1e-12,
                                   err_msg=k)


@pytest.mark.parametrize("name", cases("values", IDS))
def test_cell_runs_as_without_the_magic(name):
    s = session(name)
    assert s.result.success, s.result.error_in_exec or s.result.error_before_exec
    assert own_output(s.stdout) == s.plain_stdout
    for e, want in s.plain_values.items():
        assert e in s.magic_values, s.errors.get(f"value {e}")
        np.testing.assert_array_equal(s.magic_values[e], want, err_msg=e)


@pytest.mark.parametrize("name", cases("gradients", IDS))
def test_gradients_equal_the_frameworks_autodiff(name):
    s, case = session(name), passes.by_name(name)
    assert s.backward is not None, f"no cell backward: {getattr(s.r, 'notes', s.r)}"
    ref = reference(name)["grads"]
    scale = scale_of(ref)
    if "gradients" in s.errors:
        pytest.fail(s.errors["gradients"])
    for w in simple_names(case):
        if w in case.crossing:
            continue
        assert w in s.gradients, f"gradients() has no {w!r}: {sorted(s.gradients)}"
        close(s.gradients[w], ref[w], scale, f"gradients()[{w!r}]")
    for w in derived(case):
        kind, got = s.grad_of[w]
        if kind == "raised":
            raise got
        close(got, ref[w], scale, f"grad_of({w})")


@pytest.mark.parametrize("name", cases("pasted", IDS))
def test_shown_code_runs_pasted_after_the_cell(name):
    s, case = session(name), passes.by_name(name)
    assert s.backward is not None, "no cell backward"
    if "pasted" in s.errors:
        pytest.fail(s.errors["pasted"])
    ref = reference(name)["grads"]
    scale = scale_of(ref)
    for w in simple_names(case):
        if w not in case.crossing:
            close(s.pasted[w], ref[w], scale, f"pasted {s.backward.gradient(w)}")


@pytest.mark.parametrize("name", cases("check", IDS))
def test_check_verdict(name):
    s, case = session(name), passes.by_name(name)
    assert s.backward is not None, "no cell backward"
    check = s.backward.check
    assert check is not None, getattr(s.backward, "check_note", "")
    summary = check.summary
    if case.opaque:
        assert "PARTIAL" in summary and case.opaque in summary, summary
        assert not re.search(r"\bPASS\b", summary), summary
    else:
        assert check.passed, summary
        assert re.search(r"\bPASS\b", summary) and "PARTIAL" not in summary, summary


@pytest.mark.parametrize("name", cases("opaque", [c.name for c in passes.CASES if c.opaque]))
def test_what_crosses_an_opaque_step_is_not_derived(name):
    s, case = session(name), passes.by_name(name)
    assert s.backward is not None, "no cell backward"
    if "gradients" in s.errors:
        pytest.fail(s.errors["gradients"])
    for w in case.crossing:
        assert s.gradients.get(w) is None, f"{w} crosses {case.opaque} but has a gradient"
        kind, got = s.grad_of[w]
        if kind == "raised":
            assert case.opaque in str(got), got
        else:
            assert got is None, f"grad_of({w}) crosses {case.opaque} but has a gradient"


# -- regressions that are not forward passes with gradients --------------------------------------

def test_no_run_runs_nothing_of_the_cell():
    case = passes.by_name("numpy_side_effects_once")
    ip = fresh(case)
    with capture_output() as cap:
        result = ip.run_cell(f"%%einsum_grad -o r --no-run\n{case.cell}")
    assert "forward pass" not in cap.stdout
    with open(ip.user_ns["LOG"]) as f:
        assert f.read().count("ran") == 0
    assert "H" not in ip.user_ns and "L" not in ip.user_ns
    assert result.success or result.error_in_exec is None


def test_numpy_random_state_is_that_of_a_plain_run():
    s = session("numpy_random_draw_once")
    e = "np.random.rand()"
    assert e in s.magic_values, s.errors.get(f"value {e}")
    assert s.magic_values[e] == s.plain_values[e]


def test_makemore_reference_lists_exercise_one():
    assert makemore.GRADIENTS[0] == "dlogprobs" and makemore.GRADIENTS[-1] == "dC"
    ns = makemore.data(makemore.SEED)
    ref = makemore.autograd_reference(ns)
    assert all(ns[p].grad is None for p in makemore.PARAMETERS)   # ns left alone
    assert {d: tuple(g.shape) for d, g in ref.items()}["dW1"] == (30, 64)
    # the lecture's own closed form of dlogits (Exercise 2) equals autograd's
    own = dict(ns)
    exec(makemore.FORWARD, own)
    logits = own["logits"].detach()
    dlogits = torch.softmax(logits, 1)
    dlogits[range(32), ns["Yb"]] -= 1
    dlogits /= 32
    torch.testing.assert_close(dlogits, ref["dlogits"], rtol=1e-10, atol=1e-12)
