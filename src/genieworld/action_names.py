"""Validation of latent action names: the one check both the model bundle and ``genie actions`` use.

Below both :mod:`genieworld.genie` (which refuses a model whose ``actions.json`` is bad) and
:mod:`genieworld.actions` (which writes and reads the file), so neither imports the other.
"""

from __future__ import annotations

import re
from typing import Any

_NAME_OK = re.compile(r"^[\w .:+#()/-]{1,40}$")


def check_action_names(names: Any, num_actions: int) -> list[str]:
    """THE validation of action names (they end up in a web page and on key bindings).

    Returns the names stripped; raises ``ValueError`` naming the problem unless ``names`` is a
    list of ``num_actions`` distinct strings (or integers) of 1-40 letters, digits, spaces or
    ``. : + # ( ) / - _``.  Both readers of ``actions.json`` use it: :func:`load_action_names`
    (falls back to numbers) and :meth:`genieworld.genie.Genie.from_pretrained` (refuses the model).
    """
    if not isinstance(names, list):
        raise ValueError(f"expected a list of {num_actions} names, got {type(names).__name__}")
    if len(names) != num_actions:
        raise ValueError(f"{len(names)} names for {num_actions} latent actions")
    out = []
    for i, x in enumerate(names):
        if not isinstance(x, (str, int)) or isinstance(x, bool):
            raise ValueError(f"name {i} is a {type(x).__name__}, not a string")
        name = str(x).strip()
        if not _NAME_OK.match(name):
            raise ValueError(f"name {i} {name[:60]!r}: use 1-40 letters, digits, spaces or . : + # ( ) / - _")
        out.append(name)
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate names {dup}")
    return out
