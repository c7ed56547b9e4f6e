"""Tools for testing replicated services deterministically."""

from ._run import run, scheduler_hooks_available

__all__ = ["run", "scheduler_hooks_available"]
