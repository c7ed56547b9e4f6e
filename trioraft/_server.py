"""The runtime's old single module, kept so that ``trioraft._server`` still imports: the
runtime now lives in :mod:`trioraft._runtime`, in rooms. Import the public names from
:mod:`trioraft`."""

from ._runtime import *  # noqa: F403  (Server, Status, serve, start_server, ...)
from ._runtime import __all__ as _runtime_names
from ._runtime.driver import FLUSH_EVERY

__all__ = [*_runtime_names, "FLUSH_EVERY"]
