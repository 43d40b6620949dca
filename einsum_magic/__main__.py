"""``python -m einsum_magic "ij,jk->ik"``: the command line of :mod:`einsum_magic.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
