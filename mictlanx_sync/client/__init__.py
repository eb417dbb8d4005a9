"""The client engine: retry and breaker policy, router choice, the chunk cache, and the
``Client`` facade that composes them (client-api §8).

Modules, each with one job:

- :mod:`.engine`: ``Engine``, the one way a request is sent (router choice, breaker, retry via
  :mod:`mictlanx_sync.protocol.retrying`), the transfer pool and the buffer budget.
- :mod:`.writes`, :mod:`.reads`, :mod:`.fetch`, :mod:`.bulk`: the operations.
- :mod:`.breaker`: ``RouterBreaker`` / ``NullBreaker``, pybreaker behind our interface.
- :mod:`.balancer`: ``Balancer``, router choice per attempt with in-flight leases.
- :mod:`.cache`: ``ChunkCache``, the content-addressed chunk cache (diskcache).
"""
