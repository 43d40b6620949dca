"""Teaching: grade a learner's hand-written backward cell line by line (``--grade NAME``).

The counterpart of :mod:`einsum_magic.expect` for a whole chain. This module owns the
arrow (the learner's cell source, the namespace after it ran, a :class:`Reference`)
→ :class:`Grading`: one :class:`LineGrade` per gradient, in execution order.

* :func:`assignments` reads (``ast``) which top-level statements assign each gradient,
  spelled ``d<name>`` (Karpathy's spelling) or ``dL_d<name>``: ``=``, ``+=``, item
  assignment (``dlogprobs[range(n), Yb] = -1.0/n``), ``.clone()`` then ``+=``,
  ``torch.zeros_like`` then a loop of ``dC[ix] += demb[k, j]``.
* :func:`grade` compares each with the reference gradient of ``<name>`` and says, from
  values and shapes alone, why a wrong one is wrong: a sum missing over a broadcast axis,
  one path of a value used twice, a transpose, a sign, a constant factor (``1/n`` against
  ``1/(n-1)``), an elementwise factor such as ``(1 - h**2)``, a scatter into a table that
  loses repeated rows. Round-off is apart from wrong (:data:`ROUNDOFF`, relative to the
  gradient's largest entry), and so is a shape that differs by size-1 axes only.
* A line that is wrong only because a gradient it reads is wrong is told so: its
  statements are run again, on copies, with the reference gradient in place of each
  learner gradient they read (the learner's own rule, fed the right upstream); when that
  gives the reference, the verdict is ``'upstream'`` ("right from your ``dlogits``,
  which is wrong (line 12)"). Re-running the line is chosen over re-deriving it, as it
  judges exactly what the learner wrote, whatever the operation.
* A gradient not assigned yet, or assigned ``...`` / ``None``, is ``'missing'``: it
  fails nothing.

The first wrong line (the root: ``'wrong'`` before ``'upstream'``) is
:attr:`Grading.first_wrong`.

>>> import numpy as np
>>> x, W = np.ones((2, 3)), np.arange(12.).reshape(3, 4)
>>> dy = np.ones((2, 4))
>>> ref = Reference({"W": x.T @ dy, "x": dy @ W.T}, {"W": (3, 4), "x": (2, 3)})
>>> g = grade("dW = dy.T @ x\\ndx = dy @ W.T", {"x": x, "W": W, "dy": dy,
...           "dW": dy.T @ x, "dx": dy @ W.T}, ref)
>>> [(l.target, l.verdict) for l in g.lines]
[('dW', 'wrong'), ('dx', 'right')]
>>> print(g.lines[0].message)
`dW` has shape (4, 3); `W` has shape (3, 4): it is transposed (a gradient has the layout of its value: dW[i, j] goes with W[i, j])
"""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import math
import string
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["Reference", "LineGrade", "Grading", "grade", "assignments", "gradient_name",
           "forward_hints", "answers_from_code", "reference_from", "ROUNDOFF", "VERDICTS"]

#: Largest difference, relative to the gradient's largest entry, that is round-off, per dtype.
ROUNDOFF = {"float64": 1e-9, "float32": 2e-5, "float16": 5e-3, "bfloat16": 4e-2}
#: Below this relative difference a line is plainly right.
EXACT = 1e-13
#: How each verdict reads.
VERDICTS = {"right": "right", "roundoff": "right up to round-off", "size1": "right (size-1 axes)",
            "wrong": "wrong", "upstream": "wrong upstream", "missing": "missing"}
#: Most contributions tried in subsets for a missing path.
MAX_CONTRIBUTIONS = 6


@dataclass(frozen=True)
class Reference:
    """What a backward cell is graded against.

    ``gradients``: value name → its reference gradient (array or tensor);
    ``shapes``: value name → the forward value's shape (defaults to the gradients');
    ``contributions`` (optional): value name → ((forward line, contribution), …), one per
    use of a value used more than once (they sum to its gradient);
    ``hints`` and ``answers`` (optional): value name → the rule's name and shape (never
    the answer), and the answer's code, shown behind a fold and behind *Reveal*.
    """

    gradients: Mapping[str, Any]
    shapes: Mapping[str, tuple] = field(default_factory=dict)
    contributions: Mapping[str, tuple] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)

    def shape(self, name: str) -> tuple:
        if name in self.shapes:
            return tuple(self.shapes[name])
        return tuple(np.shape(_numpy(self.gradients[name])))


@dataclass(frozen=True)
class LineGrade:
    """The grade of one gradient the learner writes (or should write).

    ``verdict``: ``'right'``, ``'roundoff'`` (right up to the dtype's round-off: ``error``
    is the figure), ``'size1'`` (right values, a shape that differs by size-1 axes),
    ``'wrong'``, ``'upstream'`` (right from a wrong upstream gradient) or ``'missing'``.
    ``reason`` names the diagnosis (``'broadcast'``, ``'path'``, ``'transpose'``,
    ``'sign'``, ``'bessel'``, ``'factor'``, ``'elementwise'``, ``'scatter'``, ``'shape'``,
    ``'values'``, ``'upstream'``; ``''`` when right or missing); ``message`` says it in
    words; ``lines`` are the cell lines that assign it.
    """

    name: str
    target: str
    verdict: str
    message: str
    reason: str = ""
    lines: tuple[int, ...] = ()
    error: float | None = None
    upstream: str = ""
    hint: str = ""
    answer: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict in ("wrong", "upstream")

    @property
    def passed(self) -> bool:
        return self.verdict in ("right", "roundoff", "size1")

    @property
    def where(self) -> str:
        if not self.lines:
            return "not written"
        return ("line " if len(self.lines) == 1 else "lines ") + ", ".join(map(str, self.lines))


@dataclass(frozen=True)
class Grading:
    """Every gradient's grade, in execution order (missing ones last, in reference order)."""

    lines: tuple[LineGrade, ...]
    of: str = ""

    @property
    def first_wrong(self) -> LineGrade | None:
        """The root of the mistakes: the first ``'wrong'`` line, else the first failed one."""
        for kinds in (("wrong",), ("wrong", "upstream")):
            for line in self.lines:
                if line.verdict in kinds:
                    return line
        return None

    @property
    def failed(self) -> bool:
        return any(line.failed for line in self.lines)

    @property
    def counts(self) -> dict[str, int]:
        out = {"right": 0, "wrong": 0, "missing": 0}
        for line in self.lines:
            key = "right" if line.passed else "missing" if line.verdict == "missing" else "wrong"
            out[key] += 1
        return out

    @property
    def summary(self) -> str:
        """One line, the verdict first: ``grade: WRONG, 23 of 25 right, 2 wrong (first: …)``."""
        c = self.counts
        total = len(self.lines)
        word = "WRONG" if self.failed else "RIGHT" if c["missing"] == 0 else "OPEN"
        parts = [f"{c['right']} of {total} right"]
        if c["wrong"]:
            parts.append(f"{c['wrong']} wrong")
        if c["missing"]:
            parts.append(f"{c['missing']} not written yet")
        line = f"grade: {word}, " + ", ".join(parts)
        first = self.first_wrong
        if first is not None:
            line += f" (first wrong: {first.target}, {first.where})"
        return line


# -- reading the learner's cell ------------------------------------------------------------

def gradient_name(target: str, names) -> str | None:
    """The value ``target`` is the gradient of: ``dL_dlogits`` or ``dlogits`` → ``logits``.

    >>> gradient_name("dL_dW1", {"W1"}), gradient_name("dW1", {"W1"}), gradient_name("x", {"x"})
    ('W1', 'W1', None)
    """
    for prefix in ("dL_d", "d"):
        if target.startswith(prefix) and target[len(prefix):] in names:
            return target[len(prefix):]
    return None


def _stored(node) -> set[str]:
    """Names a statement assigns or assigns into (``x = …``, ``x += …``, ``x[i] = …``)."""
    out = set()
    for sub in ast.walk(node):
        targets = []
        if isinstance(sub, ast.Assign):
            targets = sub.targets
        elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
            targets = [sub.target]
        for t in targets:
            for part in ast.walk(t):
                if isinstance(part, ast.Name) and isinstance(part.ctx, ast.Store):
                    out.add(part.id)
            base = t
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                out.add(base.id)
    return out


def _store_lines(node, name: str) -> list[int]:
    """The lines of the innermost statements in ``node`` that assign (into) ``name``."""
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and name in _stored(sub):
            out.append(sub.lineno)
    return sorted(set(out))


def assignments(source: str, names) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Learner variable → (indices of the top-level statements assigning it, their lines).

    In execution order (of the first statement). Karpathy's embedding loop counts as
    assigning ``dC`` on the line of ``dC[ix] += demb[k,j]``:

    >>> src = ("dC = torch.zeros_like(C)\\n"
    ...        "for k in range(Xb.shape[0]):\\n"
    ...        "  for j in range(Xb.shape[1]):\\n"
    ...        "    ix = Xb[k,j]\\n"
    ...        "    dC[ix] += demb[k,j]\\n")
    >>> assignments(src, {"C", "emb"})
    {'dC': ((0, 1), (1, 5))}
    """
    tree = ast.parse(source)
    found: dict[str, tuple[list, list]] = {}
    for k, stmt in enumerate(tree.body):
        for target in sorted(_stored(stmt)):
            if gradient_name(target, names) is None:
                continue
            statements, lines = found.setdefault(target, ([], []))
            statements.append(k)
            lines.extend(_store_lines(stmt, target))
    order = sorted(found, key=lambda t: found[t][0][0])
    return {t: (tuple(found[t][0]), tuple(sorted(set(found[t][1])))) for t in order}


def _loaded(stmts) -> set[str]:
    return {n.id for s in stmts for n in ast.walk(s)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


# -- values ----------------------------------------------------------------------------------

def _numpy(value):
    """A float64 NumPy copy of an array, tensor or number (None if it is none of them)."""
    if value is None or value is Ellipsis:
        return None
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        if value.dtype.is_complex:
            return value.resolve_conj().numpy().astype(np.complex128)
        return value.double().numpy()
    try:
        out = np.asarray(value)
    except Exception:         # noqa: BLE001 (anything that is not an array)
        return None
    if out.dtype.kind not in "biufc":
        return None
    return out.astype(np.complex128 if out.dtype.kind == "c" else np.float64)


def _dtype(value) -> str:
    dtype = getattr(value, "dtype", None)
    text = str(dtype).replace("torch.", "") if dtype is not None else "float64"
    return text if text in ROUNDOFF else "float64"


def _coarser(*dtypes) -> str:
    return max(dtypes, key=lambda d: ROUNDOFF[d])


def _error(g, r, floor: float = 0.0) -> float:
    """max |g - r| relative to the largest |r| (or ``floor``, if larger; absolute if both 0)."""
    scale = max(float(np.max(np.abs(r))) if r.size else 0.0, floor)
    diff = float(np.max(np.abs(g - r))) if r.size else 0.0
    if not math.isfinite(diff):
        return math.inf
    return diff / scale if scale > 0 else diff


def _close(g, r, tol, floor: float = 0.0) -> bool:
    return g.shape == r.shape and _error(g, r, floor) <= tol


def _shape_text(shape) -> str:
    return str(tuple(int(n) for n in shape))


def _fig(x: float) -> str:
    return f"{x:.2g}"


# -- diagnosis ---------------------------------------------------------------------------------

def _letters(n: int) -> str:
    return string.ascii_lowercase[8:8 + n] if n <= 18 else string.ascii_letters[:n]


def _sum_code(target: str, axes: tuple[int, ...], ndim: int, keep: tuple[int, ...]) -> str:
    """``np.einsum('ij->j', db1)`` for summing axes ``axes`` of an ``ndim``-array."""
    letters = _letters(ndim)
    out = "".join(c for k, c in enumerate(letters) if k not in axes)
    code = f"np.einsum('{letters}->{out}', {target})"
    if keep:
        code += f", size-1 axes kept: {target}.sum({_axes_arg(axes)}, keepdim=True)"
    return code


def _axes_arg(axes) -> str:
    return str(axes[0]) if len(axes) == 1 else str(tuple(axes))


def _broadcast_axes(big: tuple, small: tuple) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The axes of ``big`` along which ``small`` was broadcast, and those kept with size 1."""
    if len(small) > len(big):
        return None
    pad = len(big) - len(small)
    summed, kept = [], []
    for k, n in enumerate(big):
        m = small[k - pad] if k >= pad else None
        if m is None:
            summed.append(k)
        elif m == 1 and n != 1:
            summed.append(k)
            kept.append(k)
        elif m != n:
            return None
    return (tuple(summed), tuple(kept)) if summed else None


def _factor(g, r, tol):
    """c with g ≈ c·r (least squares), or None."""
    rr = float(np.vdot(r, r).real)
    if rr == 0:
        return None
    c = float(np.vdot(r, g).real) / rr
    if abs(c - 1) <= max(1e-6, 10 * tol) or _error(g, c * r) > max(1e-6, 10 * tol):
        return None
    return c


def _integer(x: float) -> int | None:
    if not math.isfinite(x) or x < 1.5:
        return None
    n = round(x)
    return n if abs(x - n) < 1e-6 * max(1.0, n) else None


def _factor_message(target, name, c) -> tuple[str, str]:
    n = _integer(1 / (1 - c)) if c < 1 else _integer(1 + 1 / (c - 1)) if c > 1 else None
    if n is not None and n > 2:
        if c < 1:
            return "bessel", (f"`{target}` is (n-1)/n = {n - 1}/{n} times the gradient of "
                              f"`{name}`: the variance divides by n-1 (Bessel's correction), "
                              f"so its gradient carries 1/(n-1) = 1/{n - 1}, not 1/n = 1/{n}")
        return "bessel", (f"`{target}` is n/(n-1) = {n}/{n - 1} times the gradient of `{name}`: "
                          f"the forward divides by n = {n}, so its gradient carries 1/n, "
                          f"not 1/(n-1) (Bessel's correction is the variance's alone)")
    n = _integer(c)
    if n is not None:
        return "factor", (f"`{target}` is {n} times the gradient of `{name}`: a factor 1/{n} is "
                          f"missing (a mean over {n} entries divides its gradient by {n})")
    n = _integer(1 / c) if c > 0 else None
    if n is not None:
        return "factor", (f"`{target}` is 1/{n} of the gradient of `{name}`: an extra factor "
                          f"1/{n} (only a mean divides by its count; a sum passes the "
                          "gradient on whole)")
    if c < 0:
        return "sign", (f"`{target}` is {_fig(c)} times the gradient of `{name}`: the sign and "
                        "a constant factor are wrong")
    return "factor", f"`{target}` is {_fig(c)} times the gradient of `{name}`: a constant factor"


def _elementwise(g, r, values, tol) -> tuple[str, str] | None:
    """An elementwise factor between g and r: a forward value v, (1 - v**2) or 1/v.

    A missing factor is looked for first (among every value), then an extra one.
    """
    candidates = []
    for vname, v in values:
        with np.errstate(divide="ignore", invalid="ignore"):
            for label, f in ((f"(1 - {vname}**2)", 1 - v ** 2), (f"1/{vname}", 1 / v),
                             (f"{vname}", v)):
                try:
                    f = np.broadcast_to(f, r.shape)
                except ValueError:
                    continue
                if np.all(np.isfinite(f)) and np.any(f != 1):
                    candidates.append((vname, label, f))
    limit = max(1e-6, 10 * tol)
    for vname, label, f in candidates:
        if _error(g * f, r) <= limit:
            what = (f"the derivative of tanh at its output `{vname}`" if label.startswith("(1 -")
                    else f"the derivative of log at its input `{vname}`"
                    if label.startswith("1/") else "the other factor of the product")
            return "elementwise", (f"the factor {label} is missing: {what}; the gradient is "
                                   f"{label} times yours, elementwise")
    for vname, label, f in candidates:
        if _error(g, r * f) <= limit:
            return "elementwise", (f"an extra factor {label}, elementwise: the gradient is "
                                   f"yours divided by {label}")
    return None


def _subsets(n: int):
    for size in range(1, n):
        yield from itertools.combinations(range(n), size)


def _path(target, name, g, contributions, tol) -> str | None:
    parts = [(line, _numpy(c)) for line, c in contributions]
    if len(parts) < 2 or len(parts) > MAX_CONTRIBUTIONS:
        return None
    for subset in _subsets(len(parts)):
        total = sum(parts[k][1] for k in subset)
        if np.shape(total) != g.shape:
            try:
                total = np.broadcast_to(total, g.shape)
            except ValueError:
                continue
        if _close(g, np.asarray(total), max(tol, 1e-9)):
            lines = [line for line, _ in parts]
            have = [parts[k][0] for k in subset]
            used = _and([str(x) for x in lines])
            kept = _and([str(x) for x in have])
            which = "the one" if len(have) == 1 else "those"
            return (f"`{name}` is used on lines {used}: its gradient is the sum of "
                    f"{'both' if len(lines) == 2 else 'all'} contributions; yours has only "
                    f"{which} from line{'s' if len(have) > 1 else ''} {kept} "
                    f"(add the other with `{target} +=`)")
    return None


def _and(items) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _rows(target, name, g, r, tol) -> str | None:
    """A table whose rows are partly right: a scatter that lost repeated indices."""
    if g.ndim < 2 or g.shape != r.shape:
        return None
    rows = g.reshape(g.shape[0], -1)
    ref = r.reshape(r.shape[0], -1)
    scale = float(np.max(np.abs(r))) or 1.0
    wrong = np.max(np.abs(rows - ref), axis=1) > tol * scale
    right_used = (~wrong) & (np.max(np.abs(ref), axis=1) > 0)
    if not wrong.any() or not right_used.any():
        return None
    bad = [int(k) for k in np.flatnonzero(wrong)]
    shown = ", ".join(map(str, bad[:6])) + (", …" if len(bad) > 6 else "")
    return (f"rows {shown} of `{target}` are wrong, the other rows right: a row of `{name}` "
            f"that is looked up more than once gets the sum of every lookup's gradient; a "
            f"scatter that assigns (or `{target}[idx] += …` with repeated idx, which keeps one "
            f"of them) loses the others: accumulate in a loop (`{target}[ix] += …`) or with "
            f"`index_add_` / `np.add.at`")


def diagnose(target: str, name: str, g, r, tol: float, values=(), contributions=(),
             operand: str = "") -> tuple[str, str]:
    """(reason, message) for a wrong gradient ``g`` of ``name`` against the reference ``r``.

    ``values``: (name, array) of the forward values, for elementwise factors;
    ``contributions``: ((line, array), …) per use of ``name``; ``operand``: what the sum
    that fixes a missing broadcast sum is written over (default ``target``).

    >>> import numpy as np
    >>> up = np.arange(6.).reshape(2, 3)
    >>> diagnose("db", "b", up, up.sum(0), 1e-9, operand="dh")[1]
    "`db` has shape (2, 3); `b` has shape (3,): it was broadcast over axis 0 (size 2), so its gradient is summed over that axis (np.einsum('ij->j', dh))"
    """
    if g.shape != r.shape and g.size == r.size and _squeezed(g.shape) == _squeezed(r.shape):
        g = g.reshape(r.shape)             # size-1 axes aside, the values are wrong
    if g.shape != r.shape:
        return _diagnose_shape(target, name, g, r, tol, values, contributions, operand)
    if contributions:
        said = _path(target, name, g, contributions, tol)
        if said:
            return "path", said
    if g.ndim == 2 and g.shape[0] == g.shape[1] and _close(g.T, r, tol):
        return "transpose", (f"`{target}` is the transpose of the gradient of `{name}` (a "
                             f"gradient has the layout of its value: {target}[i, j] goes "
                             f"with {name}[i, j])")
    if _close(-g, r, tol):
        return "sign", f"`{target}` has the wrong sign: it is minus the gradient of `{name}`"
    c = _factor(g, r, tol)
    if c is not None:
        return _factor_message(target, name, c)
    said = _elementwise(g, r, values, tol)
    if said:
        return said
    said = _rows(target, name, g, r, tol)
    if said:
        return "scatter", said
    diff = np.abs(g - r)
    at = tuple(int(k) for k in np.unravel_index(int(np.argmax(diff)), diff.shape))
    at_text = f" at {list(at)}" if at else ""
    return "values", (f"`{target}` differs from the gradient of `{name}`: largest difference "
                      f"{_fig(float(diff.max()))}{at_text}, where the gradient is "
                      f"{_fig(float(r[at]))}")


def _squeezed(shape) -> list[int]:
    return [n for n in shape if n != 1]


def _diagnose_shape(target, name, g, r, tol, values, contributions, operand=""):
    head = f"`{target}` has shape {_shape_text(g.shape)}; `{name}` has shape {_shape_text(r.shape)}"
    if g.ndim == 2 and g.T.shape == r.shape and _close(g.T, r, tol):
        return "transpose", (f"{head}: it is transposed (a gradient has the layout of its "
                             f"value: {target}[i, j] goes with {name}[i, j])")
    axes = _broadcast_axes(g.shape, r.shape)
    if axes is not None:
        summed, kept = axes
        sizes = ", ".join(f"axis {k} (size {g.shape[k]})" for k in summed)
        code = _sum_code(operand or target, summed, g.ndim, kept)
        msg = (f"{head}: it was broadcast over {sizes}, so its gradient is summed over "
               f"{'that axis' if len(summed) == 1 else 'those axes'} ({code})")
        total = g.sum(axis=summed, keepdims=True).reshape(r.shape)
        if not _close(total, r, tol):
            _, why = diagnose(f"the sum of {target}", name, total, r, tol, values, contributions)
            msg += f"; summed, it is still wrong: {why}"
        return "broadcast", msg
    return "shape", f"{head}: a gradient has the shape of its value"


# -- grading ----------------------------------------------------------------------------------

def _like(value, template):
    """``value`` (NumPy) in the framework, dtype and (same size) shape of ``template``."""
    shape = tuple(template.shape) if np.size(value) == int(np.prod(template.shape)) else None
    if type(template).__module__.startswith("torch"):
        import torch

        out = torch.as_tensor(np.asarray(value)).to(dtype=template.dtype, device=template.device)
        return out.reshape(shape) if shape is not None else out
    out = np.asarray(value, dtype=getattr(template, "dtype", None))
    return out.reshape(shape) if shape is not None else out


def _copy(value):
    if type(value).__module__.startswith("torch") and hasattr(value, "clone"):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _rerun(stmts, target, ns, substitutes):
    """The value ``target`` gets when ``stmts`` run on copies of ``ns`` with ``substitutes``."""
    loaded = _loaded(stmts)
    local = dict(ns)
    for n in loaded:
        if n in local:
            local[n] = _copy(local[n])
    local.update(substitutes)
    code = compile(ast.Module(body=list(stmts), type_ignores=[]), "<grade>", "exec")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        exec(code, local)               # noqa: S102 (the learner's own lines, on copies, quiet)
    return local.get(target)


def grade(source: str, ns: Mapping[str, Any], reference: Reference, of: str = "") -> Grading:
    """Grade every gradient the learner's cell ``source`` assigns, from ``ns`` after its run.

    ``of`` names the forward result graded against (for the display).
    """
    names = set(reference.gradients)
    found = assignments(source, names)
    tree = ast.parse(source)
    refs = {n: _numpy(v) for n, v in reference.gradients.items()}
    values = [(n, _numpy(ns[n])) for n in reference.gradients
              if n in ns and _numpy(ns[n]) is not None]
    targets = {gradient_name(t, names): t for t in found}
    floor = _floor(refs.values())
    grades: dict[str, LineGrade] = {}
    # graded once complete (by the last statement assigning it), so that every gradient a
    # line reads is graded before it; listed in execution order (by the first statement)
    for target in sorted(found, key=lambda t: found[t][0][-1]):
        statements, lines = found[target]
        name = gradient_name(target, names)
        common = dict(name=name, target=target, lines=lines,
                      hint=reference.hints.get(name, _default_hint(name, reference)),
                      answer=reference.answers.get(name, ""))
        learner = ns.get(target)
        g, r = _numpy(learner), refs[name]
        if g is None:
            grades[target] = LineGrade(verdict="missing", message=f"`{target}` is not written "
                                       "yet", **common)
            continue
        tol = ROUNDOFF[_coarser(_dtype(learner), _dtype(reference.gradients[name]))]
        here = values
        verdict = _verdict(target, name, g, r, tol, _dtype(learner), floor)
        if verdict is not None:
            grades[target] = LineGrade(**verdict, **common)
            continue
        operand = _operand(tree, statements, target, names, ns, g.shape)
        judged = g                     # what the reason is read from
        upstream = _wrong_upstream(tree, statements, target, names, grades)
        if upstream:
            subs = {grades[u].target: _like(refs[grades[u].name], ns[grades[u].target])
                    for u in _read_targets(tree, statements, target, names, grades)}
            try:
                again = _numpy(_rerun([tree.body[k] for k in statements], target, ns, subs))
            except Exception:          # noqa: BLE001 (the learner's line on other values)
                again = None
            if again is not None and \
                    _verdict(target, name, again, r, tol, "float64", floor) is not None:
                first = grades[upstream]
                grades[target] = LineGrade(
                    verdict="upstream", reason="upstream", upstream=first.target,
                    message=(f"right from your `{first.target}`, which is wrong ({first.where}); "
                             f"fix that line first"), **common)
                continue
            if again is not None:      # the learner's own rule, fed the right upstream
                judged = again
        reason, message = diagnose(target, name, judged, r, tol, here,
                                   reference.contributions.get(name, ()), operand)
        grades[target] = LineGrade(verdict="wrong", reason=reason, message=message, **common)
    out = [grades[t] for t in found]
    for name in reference.gradients:
        if name not in targets:
            out.append(LineGrade(name=name, target=f"d{name}", verdict="missing",
                                 message=f"`d{name}` is not written yet",
                                 hint=reference.hints.get(name, _default_hint(name, reference)),
                                 answer=reference.answers.get(name, "")))
    return Grading(tuple(out), of)


def _floor(refs) -> float:
    """The cell's gradient scale below which differences are round-off: a tenth of the median
    of each gradient's largest entry (a gradient that is zero but for round-off, such as
    ``dlogit_maxes``, is judged at the scale of the gradients that summed to it)."""
    tops = [float(np.max(np.abs(r))) for r in refs if r is not None and r.size]
    return 0.1 * float(np.median(tops)) if tops else 0.0


def _verdict(target, name, g, r, tol, dtype, floor: float = 0.0) -> dict | None:
    """The verdict fields when ``g`` is right (maybe up to round-off or size-1 axes), else None."""
    note = ""
    if g.shape != r.shape:
        if g.size != r.size or _squeezed(g.shape) != _squeezed(r.shape):
            return None
        note = (f"; `{target}` has shape {_shape_text(g.shape)} where `{name}` has "
                f"{_shape_text(r.shape)}: they differ by size-1 axes only, which broadcasting "
                "fills in")
        g = g.reshape(r.shape)
    error = _error(g, r, floor)
    if error > tol:
        return None
    if error <= EXACT:
        verdict, message = "right", "right"
    else:
        verdict = "roundoff"
        message = (f"right up to {dtype if dtype != 'float64' else _round_dtype(tol)} round-off "
                   f"(largest difference {_fig(error)} of the largest entry)")
    if note:
        verdict = "size1"
        message += note
    return dict(verdict=verdict, message=message, error=error)


def _round_dtype(tol) -> str:
    return next(d for d, t in ROUNDOFF.items() if t == tol)


def _operand(tree, statements, target, names, ns, shape) -> str:
    """The learner gradient a one-line alias reads (``db1 = dhprebn``, ``db1 =
    dhprebn.clone()``), the operand of the sum it misses, if it has ``shape``; else ``''``
    (the sum is then written over the learner's own value)."""
    if len(statements) != 1:
        return ""
    stmt = tree.body[statements[0]]
    if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
        return ""
    value = stmt.value
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
            and value.func.attr in ("clone", "copy") and not value.args:
        value = value.func.value
    if not isinstance(value, ast.Name) or value.id == target or not gradient_name(value.id, names):
        return ""
    return value.id if tuple(np.shape(ns.get(value.id))) == shape else ""


def _read_targets(tree, statements, target, names, grades) -> list[str]:
    """Graded gradients (other than ``target``) that the statements read, as value names."""
    loaded = _loaded([tree.body[k] for k in statements])
    out = []
    for t in sorted(loaded):
        if t != target and t in grades and grades[t].verdict != "missing":
            out.append(t)
    return out


def _wrong_upstream(tree, statements, target, names, grades) -> str:
    """The first (by line) wrong gradient the statements read, as the learner's variable."""
    wrong = [t for t in _read_targets(tree, statements, target, names, grades)
             if grades[t].failed]
    if not wrong:
        return ""
    return min(wrong, key=lambda t: grades[t].lines or (0,))


# -- hints and answers -----------------------------------------------------------------------

def _default_hint(name: str, reference: Reference) -> str:
    return (f"the gradient of `{name}` has the shape of `{name}`, "
            f"{_shape_text(reference.shape(name))}")


_CALL_RULES = {
    "sum": "sum: the gradient is broadcast back over the summed axes",
    "mean": "mean: the gradient is broadcast back, divided by the count",
    "max": "max: the gradient goes to the position of the maximum",
    "exp": "exp: multiply by its output",
    "log": "log: divide by its input",
    "tanh": "tanh: multiply by (1 - output**2)",
    "softmax": "softmax: p * (g - (p * g).sum)",
    "view": "reshape: reshape the gradient back",
    "reshape": "reshape: reshape the gradient back",
    "transpose": "transpose: transpose the gradient back",
    "masked_fill": "masked_fill: zero where filled",
    "var": "variance: 2 (x - mean) / (n - correction)",
}
_BIN_RULES = {
    ast.MatMult: "matrix product: the swap trick, the cotangent takes the product's place "
                 "and the other factor is transposed",
    ast.Add: "sum: the gradient passes through",
    ast.Sub: "difference: the gradient passes through (negated for the right side)",
    ast.Mult: "product: multiply by the other factor",
    ast.Div: "quotient: divide by the denominator (the denominator's gets -num/den**2)",
    ast.Pow: "power rule: p * x**(p - 1)",
}


def _rule(stmt, name: str) -> str:
    """The rule the backward of ``stmt`` applies to ``name``: the innermost use's."""
    best = None
    for node in ast.walk(stmt):
        if isinstance(node, ast.BinOp) and any(isinstance(s, ast.Name) and s.id == name
                                               for s in (node.left, node.right)):
            best = _BIN_RULES.get(type(node.op), best)
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id == name:
            best = "indexing: the gradient is scattered back, a repeated index accumulates"
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                    and func.value.id == name and func.attr in _CALL_RULES:
                best = _CALL_RULES[func.attr]
            elif isinstance(func, ast.Attribute) and any(isinstance(a, ast.Name) and a.id == name
                                                         for a in node.args) \
                    and func.attr in _CALL_RULES:
                best = _CALL_RULES[func.attr]
        elif isinstance(node, ast.Attribute) and node.attr == "T" \
                and isinstance(node.value, ast.Name) and node.value.id == name:
            best = best or "transpose: transpose the gradient back"
    return best or "each use passes the gradient back through its operation"


def _elementwise_rule(rule: str) -> bool:
    return rule.split(":", 1)[0] in ("sum", "difference", "product", "quotient", "power rule")


def forward_hints(source: str, shapes: Mapping[str, tuple]) -> dict[str, str]:
    """Per value of the forward ``source``: the rule of each line that uses it, and its shape.

    Never the answer: which operations the gradient goes back through, and its shape.

    >>> h = forward_hints("H = X @ W\\nZ = np.tanh(H)", {"X": (2, 3), "W": (3, 4), "H": (2, 4)})
    >>> print(h["H"])
    `H` (2, 4) is used on line 2 (tanh: multiply by (1 - output**2)); its gradient has shape (2, 4)
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    uses: dict[str, list] = {}
    for stmt in tree.body:
        assigned = [t.id for t in getattr(stmt, "targets", ()) if isinstance(t, ast.Name)]
        out_shape = shapes.get(assigned[0]) if len(assigned) == 1 else None
        for name in sorted(_loaded([stmt])):
            if name in shapes:
                rule = _rule(stmt, name)
                if out_shape is not None and _elementwise_rule(rule) and \
                        _broadcast_axes(tuple(out_shape), tuple(shapes[name])) is not None:
                    rule += (f"; broadcast from {_shape_text(shapes[name])} to "
                             f"{_shape_text(out_shape)}: summed back over the broadcast axes")
                uses.setdefault(name, []).append((stmt.lineno, rule))
    out = {}
    for name, shape in shapes.items():
        used = uses.get(name, [])
        text = _shape_text(shape)
        if not used:
            out[name] = f"`{name}` {text}: its gradient has shape {text}"
            continue
        lines = "; ".join(f"line {line} ({rule})" for line, rule in used)
        more = ", the gradient is the sum over its uses" if len(used) > 1 else ""
        out[name] = (f"`{name}` {text} is used on {lines}{more}; its gradient has shape {text}")
    return out


def answers_from_code(code: str, names) -> dict[str, str]:
    """The statements of backward ``code`` that assign each ``dL_d<name>``, by value name.

    >>> answers_from_code("dL_dH = dL_dZ * (1 - Z ** 2)\\ndL_dX = dL_dH @ W.T", {"H", "X"})
    {'H': 'dL_dH = dL_dZ * (1 - Z ** 2)', 'X': 'dL_dX = dL_dH @ W.T'}
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {}
    out: dict[str, list] = {}
    for stmt in tree.body:
        for target in sorted(_stored(stmt)):
            if target.startswith("dL_d") and target[4:] in names:
                out.setdefault(target[4:], []).append(ast.get_source_segment(code, stmt))
    return {k: "\n".join(v) for k, v in out.items()}


def reference_from(backward) -> Reference:
    """The :class:`Reference` of a cell backward (what ``-o NAME`` stores as ``NAME.backward``).

    Uses ``backward.gradients()`` (every input and named intermediate, by the user's names,
    a scalar sink's cotangent 1; the sinks themselves, ``backward.sinks``, are not graded:
    the loss's gradient is the cotangent given), and where the backward has them: ``contributions(name)``
    (((forward line, array), …), one per use of a value used more than once), ``code`` (the
    answers, its ``dL_d<name>`` statements) and ``source`` (the forward cell: the hints).

    >>> import numpy as np
    >>> class B:
    ...     code = "dL_dx = dL_dy * 2"
    ...     source = "y = 2 * x\\nloss = y.sum()"
    ...     sinks = ("loss",)
    ...     def gradients(self):
    ...         return {"x": np.full(3, 2.0), "y": np.ones(3), "loss": np.ones(())}
    >>> r = reference_from(B())
    >>> r.shapes, r.answers
    ({'x': (3,), 'y': (3,)}, {'x': 'dL_dx = dL_dy * 2'})
    >>> print(r.hints["x"])
    `x` (3,) is used on line 1 (product: multiply by the other factor); its gradient has shape (3,)
    """
    sinks = set(getattr(backward, "sinks", ()) or ())
    grads = {k: v for k, v in dict(backward.gradients()).items() if k not in sinks}
    shapes = {k: tuple(int(n) for n in np.shape(v)) for k, v in grads.items()}
    contributions = {}
    split = getattr(backward, "contributions", None)
    if callable(split):
        for name in grads:
            parts = tuple(split(name) or ())
            if len(parts) > 1:
                contributions[name] = parts
    code = getattr(backward, "code", "")
    answers = answers_from_code(code, grads) if isinstance(code, str) else {}
    source = getattr(backward, "source", None)
    hints = forward_hints(source, shapes) if isinstance(source, str) else {}
    return Reference(grads, shapes, contributions, hints, answers)
