"""Views: pure functions of the model to text, HTML and widgets, and the display that carries them.

:mod:`.verdict` (the outcome said first), :mod:`.text` (``text/plain``), :mod:`.html` (the
self-contained page and its tabs), :mod:`.teaching`, :mod:`.colours`, :mod:`.diagram`,
:mod:`.sliders`, :mod:`.widget` (the MIME bundle and live widgets), :mod:`.frontend` (which
display a frontend gets), :mod:`.chain` (the cell backward's page).
"""
