"""The client engine: retry and breaker policy, router choice, the chunk cache, and the
``Client`` facade that composes them (client-api §8).

Modules, each with one job:

- :mod:`.policies`: ``RetryPolicy``, ``BreakerPolicy``, ``is_retryable``, ``wait_seconds`` (pure).
- :mod:`.retrying`: ``call_with_retry``, the one retry layer (tenacity).
- :mod:`.breaker`: ``RouterBreaker`` / ``NullBreaker``, pybreaker behind our interface.
- :mod:`.balancer`: ``Balancer``, router choice per attempt with in-flight leases.
- :mod:`.cache`: ``ChunkCache``, the content-addressed chunk cache (diskcache).
"""
