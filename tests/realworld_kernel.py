"""Kernel-side helpers of tests/test_real_world.py (imported inside the Jupyter kernel).

:func:`prepare` seeds the random generators and imports the array libraries so that
every case runs the same way with and without the magic; :func:`truth_start` and
:func:`truth_stop` record, with a wrapper of their own (independent of
``einsum_magic.cell.capture``), every outermost einsum call a plain run makes;
:func:`report` prints one JSON line comparing the magic's run with the plain one.
"""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np

TARGETS = (("numpy", "einsum"), ("jax.numpy", "einsum"), ("torch", "einsum"),
           ("opt_einsum", "contract"), ("einops", "einsum"))
STATE: dict = {}


def prepare(shell) -> None:
    """Import the libraries, seed everything, remember the names that exist now."""
    for name, _ in TARGETS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    np.random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)
    STATE["names"] = set(shell.user_ns)


def truth_start() -> None:
    calls: list = []
    depth = [0]
    patched = []
    for name, attribute in TARGETS:
        module = sys.modules.get(name)
        if module is None:
            continue
        original = getattr(module, attribute)

        def wrapper(*args, _original=original, _function=f"{name}.{attribute}", **kwargs):
            if depth[0]:
                return _original(*args, **kwargs)
            depth[0] += 1
            try:
                result = _original(*args, **kwargs)
            finally:
                depth[0] -= 1
            frame = sys._getframe(1)
            calls.append((_function, frame.f_code.co_filename, frame.f_code.co_name,
                          frame.f_lasti, _equation(_function, args), _shapes(_function, args)))
            return result

        setattr(module, attribute, wrapper)
        patched.append((module, attribute, original))
    STATE["calls"], STATE["patched"] = calls, patched


def truth_stop(shell) -> None:
    for module, attribute, original in STATE.pop("patched"):
        setattr(module, attribute, original)
    sites: dict = {}
    for function, filename, scope, lasti, equation, shapes in STATE["calls"]:
        sites.setdefault((function, filename, scope, lasti, equation), shapes)
    STATE["sites"] = [(key[4], shapes) for key, shapes in sites.items()]
    STATE["values"] = snapshot(shell)


def _equation(function: str, args) -> str | None:
    if function == "einops.einsum":
        return None
    return args[0].replace(" ", "") if isinstance(args[0], str) else None


def _shapes(function: str, args) -> list:
    if function == "einops.einsum":
        operands = args[:-1]
    elif isinstance(args[0], str):
        operands = args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = operands[0]
    else:
        operands = args[0:len(args) - len(args) % 2:2]
    return [list(np.shape(x)) for x in operands]


def snapshot(shell) -> dict:
    """Every name the cell made (and the array attributes of its own classes' objects) as NumPy."""
    out = {}
    for name, value in shell.user_ns.items():
        if name.startswith("_") or name in STATE["names"]:
            continue
        array = _array(value)
        if array is not None:
            out[name] = array
        elif type(value).__module__ == "__main__" and hasattr(value, "__dict__"):
            for attribute, inner in vars(value).items():
                array = _array(inner)
                if array is not None:
                    out[f"{name}.{attribute}"] = array
    return out


def _array(value):
    if isinstance(value, (bool, int, float, complex)):
        return np.asarray(value)
    module = type(value).__module__ or ""
    if not module.startswith(("numpy", "jax", "jaxlib", "torch")):
        return None
    try:
        if module.startswith("torch"):
            value = value.detach().cpu()
        array = np.array(value)
    except Exception:                       # noqa: BLE001 (objects that are no arrays)
        return None
    return array if array.dtype.kind in "biufc" else None


def report(shell, result_name: str) -> None:
    """One JSON line: the plain run's sites and values against what the magic showed."""
    result = shell.user_ns.get(result_name)
    values = snapshot(shell)
    plain = STATE["values"]
    differ = sorted(k for k in plain if k not in values or plain[k].shape != values[k].shape
                    or not np.array_equal(plain[k], values[k], equal_nan=True))
    shown = [] if result is None else [
        (a.call.equation.replace(" ", "") if a.call.style not in ("einops", "interleaved")
         else None,
         [list(s) for s in a.derivation.shapes], a.call.where or f"line {a.call.line}")
        for a in result.analyses if not a.equals]   # products (x @ W) are no einsum calls
    print(json.dumps({"truth": STATE["sites"], "shown": shown, "differ": differ,
                      "values": sorted(plain)}))
