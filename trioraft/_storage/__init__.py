"""Storages: where a server persists its hard state, log and snapshot."""

from .base import Storage, StorageError, stage
from .disk import DiskStorage
from .memory import MemoryStorage

__all__ = ["DiskStorage", "MemoryStorage", "Storage", "StorageError", "stage"]
