"""Offline Durable Functions backend: engine, virtual clock and the durable HTTP API.

Wiring into a host::

    functions = app.get_functions()          # once: a second call raises
    engine = DurableEngine(functions, "state/durable.db", clock=FastClock(speed=3600))
    engine.start()
    rpc = RpcServer(engine)
    rpc.start()
    client = json.dumps(rpc.client_binding())  # the `client` argument of client functions
    ...
    engine.wait_for(instance_id, {"Completed", "Failed"}, timeout=30)
    rpc.stop()
    engine.stop()

For tests and benchmarks that give every activity's answer and fire every timer themselves,
:mod:`testsupport.replay` drives one orchestrator through the same replay, step by step.
"""

from ._episode import NonDeterministicOrchestrationError
from .clock import Clock, FastClock, SystemClock
from .engine import DurableEngine, UnknownOrchestratorError
from .rpc import RpcServer, close_sdk_client_session
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
    "close_sdk_client_session",
]
