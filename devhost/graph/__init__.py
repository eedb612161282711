"""An offline Microsoft Graph that enforces the ``exportPersonalData`` contract.

The app cannot be tested against the real service (exports take days and touch real people),
so this simulator reproduces what the contract says the service does, including the parts
that hurt: the SAS checks run for real against Azurite *through the SAS it was given*, the
call is not idempotent, an unknown operation is a 400, and throttling, outages and dropped
connections can be switched on from another process.

Time for the export and for Graph's documented quotas (:mod:`.quotas`: a day's submits, an
hour's polls, 429 without Retry-After) comes from an injected clock, so a host can run a
three-day export, or a day of quota, in seconds; token lifetimes and the submit throttle fault
stay on real time because clients experience them in real time.
"""

from .directory import DEMO_DIRECTORY
from .faults import Faults
from .operations import OperationView
from .quotas import Quotas
from .routes import RequestRecord
from .simulator import GraphSimulator
from .tokens import EXPORT_ROLE, GRAPH_RESOURCE, READ_ROLE

__all__ = [
    "DEMO_DIRECTORY",
    "EXPORT_ROLE",
    "GRAPH_RESOURCE",
    "READ_ROLE",
    "Faults",
    "GraphSimulator",
    "OperationView",
    "Quotas",
    "RequestRecord",
]
