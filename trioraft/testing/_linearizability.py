"""The linearizability checker's public names, from the modules that define them.

:mod:`~trioraft.testing._history` (:class:`History` and its operations),
:mod:`~trioraft.testing._models` (:class:`Model` and the ready models),
:mod:`~trioraft.testing._machine_model` (models made of a state machine) and
:mod:`~trioraft.testing._checker` (:func:`check_linearizability`, the search). Import
them from :mod:`trioraft.testing`; this module stays for code that imported them from
here.
"""

from __future__ import annotations

from ._checker import LinearizabilityResult, check_linearizability
from ._history import History, PendingOperation
from ._models import UNKNOWN, Model, counter_model, kv_model, outputs_match
from ._operation import Operation

__all__ = [
    "History",
    "LinearizabilityResult",
    "Model",
    "Operation",
    "PendingOperation",
    "UNKNOWN",
    "check_linearizability",
    "counter_model",
    "kv_model",
    "outputs_match",
]
