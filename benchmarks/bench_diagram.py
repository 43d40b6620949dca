"""What the Diagram tab and the letter colours add to a render (budget: the Diagram tab, 2 ms).

For each cell of ``bench_magic`` and an 8-operand chain, cold (every cache cleared, as a new
cell meets them), medians:

* *diagrams*: :func:`einsum_magic.views.diagram.section`, the forward network and each gradient's
  beside it, as SVG (the Diagram tab's whole HTML);
* *colours*: :func:`einsum_magic.views.colours.paint_html` over every other tab's HTML (what painting
  the letters costs on top of building those tabs);
* *together*: the two, i.e. what this adds to the magic's render;
* *page*: :func:`einsum_magic.views.html.page` cold (every tab, painted), for scale.
"""

from __future__ import annotations

from common import fmt_ms, median_seconds

CELLS = [
    ("matmul", "ij,jk->ik", ((2, 3), (3, 4))),
    ("attention", "bhqk,bhkd->bhqd", ((2, 4, 5, 6), (2, 4, 6, 3))),
    ("einops, 3 operands", "ab,bc,c->a", ((8, 3), (3, 5), (5,))),
    ("8-operand chain", "ab,bc,cd,de,ef,fg,gh,hi->ai",
     tuple((n, n + 1) for n in range(2, 10))),
]


def _clear():
    from einsum_magic.views import colours, diagram

    for cached in (diagram._forward, diagram._backward, diagram._svg, colours._of):
        cached.cache_clear()


def _clear_all():
    from bench_magic import _clear_caches

    _clear()
    _clear_caches()


def run() -> list[str]:
    from einsum_magic import derive
    from einsum_magic.views import colours, diagram, html
    from einsum_magic.cell.analysis import Analysis
    from einsum_magic.cell.calls import equation_call

    rows = ["| einsum | diagrams, cold | Diagram tab ≤ 2 ms | colours, cold | together | page, cold |",
            "|---|---|---|---|---|---|"]
    for title, eq, shapes in CELLS:
        d = derive(eq, shapes=shapes)
        a = Analysis(equation_call(eq), d, "defaults", check_note="skipped (--no-check)")
        tabs = "".join(f(a) for f in (html.backward, html.loops, html.shapes, html.cost))
        names = d.names + (d.output,)

        def diagrams():
            _clear()
            diagram.section(d)

        def paint():
            _clear()
            colours.paint_html(tabs, colours.of(d), names)

        def both():
            diagrams()
            colours.paint_html(tabs, colours.of(d), names)

        def page():
            _clear_all()
            html.page(a)

        t = [median_seconds(f, repeat=100) for f in (diagrams, paint, both, page)]
        rows.append(f"| {title} `{eq}` | {fmt_ms(t[0])} | {'yes' if t[0] <= 2e-3 else 'no'} | "
                    f"{fmt_ms(t[1])} | {fmt_ms(t[2])} | {fmt_ms(t[3])} |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
