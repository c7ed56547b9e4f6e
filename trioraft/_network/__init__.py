"""Transports: how servers exchange messages."""

from .base import Endpoint, Transport
from .memory import MemoryEndpoint, MemoryNetwork, NetworkStatistics

__all__ = ["Endpoint", "MemoryEndpoint", "MemoryNetwork", "NetworkStatistics", "Transport"]
