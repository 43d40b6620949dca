"""The check of a cell's backward: the framework's own autodiff of a replay of the record.

This module owns the cell backward's reference. Never the package's own reading of the
cell, never a second run of it:

1. **Replay**: every recorded node upstream of a sink is called again, ``node.func`` on
   float64 copies of the leaves (integer and boolean values as they were), in the run's
   order; an in-place node works on a copy of its target. A cast to a narrower floating
   dtype stays in float64 (``.float()``, ``.half()``, ``.to(torch.float32)``,
   ``dtype=torch.float32``): the reference is float64 all the way, also where the cell
   computes a step in float32 (RMSNorm's ``self._norm(x.float()).type_as(x)``).
2. **Fidelity gate**: every floating value the replay recomputes must equal the run's
   (relative to its magnitude: 1e-9 for a float64 run, 1e-3 for float32, the loosest
   along the values it was computed from: a float64 result of float32 steps is as
   precise as float32), and every other value exactly; else the check names the first
   operation it could not reproduce (a random draw inside a call, say) and compares
   nothing.
3. **Reference**: torch's autograd of the same replay (``torch.autograd.grad``, float64),
   with a seeded random cotangent for each sink that is not a scalar and 1 for a scalar
   sink. Every derived gradient is compared, intermediates too: a zero tensor is added to
   each recomputed intermediate, and its gradient is that intermediate's. (Autograd rather
   than ``torch.func.vjp``: a replayed in-place write of a traced value into a constant
   tensor is refused by ``torch.func``, and is ordinary for autograd.)
4. The backward lines run with NumPy on the replay's float64 values and the same
   cotangents; each gradient passes when ``max|ours - reference| <= RTOL * max|reference|``.
5. Where the cell called ``loss.backward()`` itself, the ``.grad`` torch left on each array
   it reset in the cell (``p.grad = None``, ``zero_grad()``) or retained
   (``t.retain_grad()``) is compared with the derived gradient at the run's values, at
   the run's dtype's tolerance.

Which reference runs is the check's one policy (:func:`einsum_magic.check.policy.plan`), as
for an einsum: a NumPy record goes to :mod:`~einsum_magic.chain.replay_numpy` (``jax.vjp``;
NumPy's adjoint test without JAX). Over the budget (:data:`CHECK_ELEMENTS`) nothing is
recomputed and the check says so. The report is the one
:class:`~einsum_magic.check.records.CheckReport` of einsums and cells.
Opaque nodes make the verdict PARTIAL: the gradients that cross them are listed as not
derived, never counted as passing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..check.jax import import_jax
from ..check.policy import plan, with_fallback
from ..check.records import CheckReport
from .record import Recording, Ref, map_refs
from .report import (CHECK_ELEMENTS, FIDELITY, RTOL, CellCheck, GradientRow, bind_results,
                     cell_report, close, replayed, verdict)

__all__ = ["CellCheck", "GradientRow", "check_program", "RTOL", "CHECK_ELEMENTS"]   # the report's names re-exported

def check_program(backward, seed: int = 0, budget: int = CHECK_ELEMENTS) -> CheckReport:
    """Check ``backward`` (a :class:`~einsum_magic.chain.result.CellBackward`), see the doc.

    Which reference runs is the check's one policy (:func:`einsum_magic.check.policy.plan`):
    torch autograd for a torch record; for a NumPy record ``jax.vjp`` of its ``jax.numpy``
    replay, and NumPy's adjoint test of a NumPy replay where JAX is not installed, fails to
    import or fails at run time (:func:`einsum_magic.check.policy.with_fallback`, as for an
    einsum); UNCHECKED over the budget.
    """
    rec: Recording = backward.recording
    prog = backward.program
    frameworks = {rec.info[v].framework for v in rec.info}
    needed, sizes = replayed(rec, prog.sinks)
    chosen = plan(frameworks, sum(sizes), budget)
    if not chosen.reference:
        return cell_report((), "torch autograd" if "torch" in frameworks else "jax autograd",
                           seed=seed, status="UNCHECKED", reason=chosen.reason)
    if frameworks == {"numpy"}:
        from .replay_numpy import adjoint_numpy, check_numpy

        return with_fallback(import_jax, lambda modules: check_numpy(backward, seed, budget),
                             lambda why: adjoint_numpy(backward, seed, budget, fallback=why),
                             enabled=chosen.fallback == "adjoint")
    if "jax" in frameworks:            # jax.vjp of the replay: JAX's primitives bound again,
        from .replay_numpy import check_numpy      # NumPy calls through their namesakes

        return check_numpy(backward, seed, budget)
    import torch

    leaves = sorted({r for n in needed for r in rec.nodes[n].refs
                     if rec.info[r].producer is None})
    base = {v: _float64(rec.values[v]) for v in leaves}
    with torch.random.fork_rng(devices=[]), torch.no_grad():   # the user's RNG untouched
        env, bad = _replay(rec, [rec.nodes[i] for i in needed], dict(base), check=True)
        if not bad and prog.parts:    # the values of decompositions' parts (the calls they
            env, bad = _replay(rec, list(prog.parts), env)     # make up passed the gate)
    if bad:
        return cell_report((), "torch autograd", seed=seed, status="UNCHECKED", reason=bad)
    rng = np.random.default_rng(seed)
    cots = {}
    for s in prog.sinks:
        shape = rec.info[s].shape
        cots[s] = np.float64(1.0) if not shape else rng.standard_normal(shape)
    derived = [v for v in prog.derived if rec.info[v].floating]
    inputs = [v for v in derived if rec.info[v].producer is None and v not in prog.zeros]
    recorded = {o for n in rec.nodes for o in n.outs}     # (parts of decompositions: only
    inner = [v for v in derived if v in recorded]           # through what they make up)
    primals = {v: base[v].detach().clone().requires_grad_(True) for v in inputs}
    bumps = {v: torch.zeros(rec.info[v].shape, dtype=torch.float64, requires_grad=True)
             for v in inner}
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        start = dict(base)
        start.update(primals)
        out, _ = _replay(rec, [rec.nodes[i] for i in needed], start, bumps=bumps)
        live = [s for s in prog.sinks if out[s].requires_grad]   # a sink past an opaque
        wrt = [primals[v] for v in inputs] + [bumps[v] for v in inner]    # step is not
        grads = (torch.autograd.grad([out[s] for s in live], wrt,
                                     [torch.as_tensor(cots[s]) for s in live],
                                     allow_unused=True)
                 if live and wrt else [None] * len(wrt))
    want = {}
    for v, gr in zip(inputs + inner, grads):
        want[v] = np.zeros(rec.info[v].shape) if gr is None else gr.detach().numpy()
    values = {v: (env[v].detach().numpy() if isinstance(env[v], torch.Tensor) else env[v])
              for v in prog.reads if v in env}
    values.update({v: base[v].detach().numpy() for v in prog.reads if v not in env
                   and v in base})
    got = backward.execute(values, {s: cots[s] for s in prog.sinks})
    return verdict(backward, got, want, inputs + inner, seed,
                   own=lambda floor: _own_grads(backward, floor))


def _own_grads(backward, floor: float) -> list:
    """Rows comparing the derived gradients with the ``.grad`` of the cell's own backward."""
    rec = backward.recording
    if len(rec.backwarded) != 1 or backward.program.sinks != tuple(rec.backwarded):
        return []
    sink = rec.backwarded[0]
    if rec.info[sink].shape:
        return []
    ours = backward.gradients_by_id({sink: 1.0})
    rows = []
    for v, g in ours.items():
        obj = rec.values.get(v)
        if obj is None or rec.current(obj) != v or v in rec.snapshots:
            continue
        if id(obj) not in rec.grad_reset and not getattr(obj, "retains_grad", False):
            continue
        own = getattr(obj, "grad", None)
        if own is None:
            continue
        tol = FIDELITY.get(rec.info[v].dtype, 1e-3)
        err, scale, ok = close(g, own.detach().double().cpu().numpy(), tol, tol * floor)
        rows.append(GradientRow(backward.names.name[v], backward.program.grad_names[v],
                                rec.info[v].shape, err, scale, "pass" if ok else "fail",
                                ".grad"))
    return rows


def _float64(value):
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_floating_point():
            return t.to(torch.float64).clone()
        if t.is_complex():
            return t.to(torch.complex128).clone()
        return t.clone()
    return value


def _replay(rec: Recording, needed, env: dict, *, check: bool = False, bumps=None):
    """Call every node of ``needed`` again over ``env``; with ``check``, the fidelity gate."""
    import torch

    tols: dict[int, float] = {}        # value id → the run's precision along its inputs
    for node in needed:
        target = node.refs[0] if node.inplace and node.refs else None
        copy = env[target].clone() if target is not None else None

        def value(r: Ref):
            return copy if r.id == target else env[r.id]

        args = _wide(map_refs(node.args, value))
        kwargs = _wide(map_refs(dict(node.kwargs), value))
        result = _WIDE_CALLS.get(node.op, node.func)(*args, **kwargs)
        outs = []
        _flat(result, outs)
        if target is not None and not outs:
            outs = [copy]
        inherited = max([tols.get(r, _tol(rec, r)) for r in node.refs], default=0.0)

        def gate(o, t, inherited=inherited):
            tols[o] = max(_tol(rec, o), inherited)
            return _differs(rec, o, t, tols[o])

        bad = bind_results(node, outs, env, gate=gate if check else None, bumps=bumps)
        if bad:
            return env, bad
    return env, ""


#: Casts to a narrower floating dtype, replayed as their float64 (complex128) namesake.
_WIDE_CALLS: dict = {}
_WIDE_DTYPES: dict = {}


def _wide(obj):
    """``obj`` (arguments of a call) with every narrower floating dtype made float64."""
    import torch

    if not _WIDE_DTYPES:
        _WIDE_DTYPES.update({d: torch.float64 for d in (torch.float32, torch.float16,
                                                        torch.bfloat16)})
        _WIDE_DTYPES.update({torch.complex64: torch.complex128, torch.complex32:
                             torch.complex128})
        _WIDE_CALLS.update({f"torch.Tensor.{n}": torch.Tensor.double
                            for n in ("float", "half", "bfloat16")})
    if isinstance(obj, torch.dtype):
        return _WIDE_DTYPES.get(obj, obj)
    if type(obj) is tuple:
        return tuple(_wide(o) for o in obj)
    if isinstance(obj, list):
        return [_wide(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _wide(v) for k, v in obj.items()}
    return obj


def _flat(result, out: list) -> None:
    import torch

    if isinstance(result, torch.Tensor):
        out.append(result)
    elif isinstance(result, (tuple, list)):
        for r in result:
            _flat(r, out)


def _tol(rec: Recording, v: int) -> float:
    """The fidelity tolerance of value ``v``'s own dtype (0 for a value not floating)."""
    info = rec.info[v]
    return FIDELITY.get(info.dtype, 5e-2) if info.floating else 0.0


def _differs(rec: Recording, v: int, replayed, tol: float | None = None) -> str:
    """Why the replayed value differs from the run's (``''`` when it does not), relative to
    its magnitude within ``tol`` (default: its own dtype's)."""
    import torch

    run = rec.values.get(v)
    info = rec.info[v]
    a = replayed.detach().cpu()
    b = run.detach().cpu()
    if tuple(a.shape) != tuple(b.shape):
        return f"shape {tuple(a.shape)}, the run's {tuple(b.shape)}"
    if not info.floating:
        return "" if bool((a == b).all()) else "its values differ from the run's"
    if a.numel() == 0:
        return ""
    a64, b64 = a.to(torch.complex128 if a.is_complex() else torch.float64), \
        b.to(torch.complex128 if b.is_complex() else torch.float64)
    same = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))     # inf, -inf, nan alike
    finite = torch.isfinite(b64)
    if bool((~same & ~(finite & torch.isfinite(a64))).any()):
        return "its infinities or NaNs differ from the run's"
    if not bool(finite.any()):
        return ""
    scale = float(b64[finite].abs().max())
    err = float((a64 - b64)[finite].abs().max())
    tol = _tol(rec, v) if tol is None else tol
    if not err <= tol * max(scale, 1e-30):
        return f"differs from the run's value by {err:.3g} (scale {scale:.3g})"
    return ""
