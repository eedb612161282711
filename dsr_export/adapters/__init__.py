"""Everything that talks to the world: Graph, blob storage and SAS, callbacks, queues, tokens.

Adapters import the domain for its types and vocabulary, never the other way round. They are
built in one place, :mod:`dsr_export.composition`, which activities and intake ask for them.
"""
