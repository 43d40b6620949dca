"""One run of the magic (einsum_magic.flow) and its options, through a real InteractiveShell."""

from __future__ import annotations

import sys
import traceback

import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic.magic import load_ipython_extension


@pytest.fixture
def ip():
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    shell.run_cell("import numpy as np\n"
                   "A = np.arange(6.0).reshape(2, 3)\nB = np.arange(12.0).reshape(3, 4) - 5\n"
                   "E, F = A + 1, B * 2")
    yield shell
    for name in ("C", "D", "Z", "maybe", "f", "r1", "r2", "res", "eq", "spellings"):
        shell.user_ns.pop(name, None)


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def shown(cap) -> list[str]:
    return [o.data["text/plain"] for o in cap.outputs if o.data.get("text/plain")]


# -- the options object and the one reader -----------------------------------------------

def test_o_may_take_a_name_only_a_function_of_the_cell_binds(ip):
    """One binding analysis (the source reader's): a function's local is not the user's."""
    result, _ = run(ip, "%%einsum_grad --no-check -o res\n"
                        "def f(X):\n    res = 1\n    return np.einsum('ij->j', X)\nD = f(A)")
    assert result.success, result.error_in_exec
    assert type(ip.user_ns["res"]).__name__ == "EinsumGradResult"


def test_the_cell_is_parsed_once(ip, monkeypatch):
    import ast

    parsed = []
    real = ast.parse

    def counting(source, *args, **kwargs):
        callers = [frame.filename for frame in traceback.extract_stack()]
        if ("np.einsum('ij,jk->ik', A, B)" in str(source)
                and not any("einsum_magic/chain/" in f for f in callers)):
            parsed.append(callers[-2])     # the chain (the cell's backward) reads on its own
        return real(source, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting)
    result, _ = run(ip, "%%einsum_grad --no-check -o res\nC = np.einsum('ij,jk->ik', A, B)")
    assert result.success
    assert len(parsed) == 1
