"""The cell: which einsum calls it holds (read from the source), and which ran (observed).

:mod:`.modules` (the one table of einsum functions and aliases), :mod:`.calls` (the source
reader: :class:`Call`, :func:`find_calls`), :mod:`.capture` (observing the einsum functions
while the cell runs), :mod:`.run` (running the cell once, as IPython does),
:mod:`.sites` (joining what ran with what the source names), :mod:`.analysis` (what the magic made
of each call: the records every view draws from).
"""
