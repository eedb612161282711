"""Offline Durable Functions backend: engine, virtual clock and the durable HTTP API."""

from ._episode import NonDeterministicOrchestrationError
from .clock import Clock, FastClock, SystemClock
from .engine import DurableEngine, UnknownOrchestratorError
from .rpc import RpcServer
from .store import Instance, InstanceExistsError, Query, StoreLockedError

__all__ = [
    "Clock",
    "DurableEngine",
    "FastClock",
    "Instance",
    "InstanceExistsError",
    "NonDeterministicOrchestrationError",
    "Query",
    "RpcServer",
    "StoreLockedError",
    "SystemClock",
    "UnknownOrchestratorError",
]
