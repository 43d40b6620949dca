"""%%einsum_grad without the check: end to end, and its analyse + views path (budget: a few ms).

Three cells, timed three ways (medians):

* *magic*: ``shell.run_cell`` of the whole ``%%einsum_grad --no-check --no-run`` cell in an
  ``InteractiveShell`` (option parsing, ast, derivations, text and HTML views, display);
  *cold* clears every cache first (derive, readings, Pygments blocks), as a new cell meets
  them, *warm* re-runs the same cell;
* *analyse + views*: ``find_calls`` + ``derive`` with shapes + ``text.render`` + ``html.page``
  (what every display computes), cold;
* *page*: ``html.page`` alone, cold (the self-contained HTML display, its folded Export
  included).
"""

from __future__ import annotations

from common import fmt_ms, median_seconds

CELLS = [
    ("matmul", "C = np.einsum('ij,jk->ik', A, B)", ((2, 3), (3, 4))),
    ("attention", "O = np.einsum('bhqk,bhkd->bhqd', P, V)", ((2, 4, 5, 6), (2, 4, 6, 3))),
    ("einops, 3 operands",
     'Y = einops.einsum(x, w, v, "batch d, d out, out -> batch")', ((8, 3), (3, 5), (5,))),
]


def _clear_caches():
    from einsum_magic.views import colours, diagram, html
    from einsum_magic.compute import cost
    from einsum_magic.core import interpret as reading
    from einsum_magic.core.derivation import _compile, _derive

    for cached in (_derive, _compile, html.highlight, html.highlight_module, reading.interpret,
                   cost._cost, cost._plan, diagram._forward, diagram._backward, diagram._svg,
                   colours._of):
        cached.cache_clear()


def _analyse_and_render(source, shapes, cold=True):
    from einsum_magic.views import html, text
    from einsum_magic.cell.analysis import Analysis
    from einsum_magic.cell.calls import find_calls
    from einsum_magic.core.derivation import derive

    if cold:
        _clear_caches()
    call = find_calls(source).calls[0]
    d = derive(call.equation, call.names, call.output, shapes)
    a = Analysis(call, d, "sizes from your arrays", check_note="skipped (--no-check)")
    return text.render(a), html.page(a), a


def run() -> list[str]:
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from einsum_magic.views import html
    from einsum_magic.cell.calls import find_calls

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "einsum_magic")
    shell.run_cell("import numpy as np")
    rows = ["| cell | magic, end to end, cold | magic, warm | analyse + views, cold | "
            "page, cold |", "|---|---|---|---|---|"]
    for title, source, shapes in CELLS:
        for name, shape in zip(find_calls(source).calls[0].names, shapes):
            shell.user_ns[name] = np.ones(shape)
        cell = "%%einsum_grad --no-check --no-run\n" + source

        def magic(cold=True):
            if cold:
                _clear_caches()
            with capture_output():
                result = shell.run_cell(cell)
            assert result.success

        a = _analyse_and_render(source, shapes)[2]
        cold = median_seconds(magic, repeat=200)
        warm = median_seconds(lambda: magic(cold=False), repeat=200)
        views = median_seconds(lambda: _analyse_and_render(source, shapes), repeat=200)

        def page():
            _clear_caches()
            html.page(a)

        alone = median_seconds(page, repeat=200)
        rows.append(f"| {title} | {fmt_ms(cold)} | {fmt_ms(warm)} | {fmt_ms(views)} | "
                    f"{fmt_ms(alone)} |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
