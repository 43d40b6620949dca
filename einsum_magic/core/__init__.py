"""The model of one einsum, with no IPython and no JAX: equation → derivation.

One module per concept: :mod:`.equation` (parse, make explicit, bind to shapes),
:mod:`.derivation` (the generalized swap trick), :mod:`.interpret` (relabelled and NumPy
readings of a gradient), :mod:`.loops` (for-loop source), :mod:`.names` (names in generated
code), :mod:`.shapes` (where sizes come from).
"""
