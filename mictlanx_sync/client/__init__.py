"""The client engine: retry and breaker policy, router choice, the chunk cache, and the
``Client`` facade that composes them (client-api §8).

Modules, each with one job:

- :mod:`.client`, :mod:`.client_base`, :mod:`.client_writes`, :mod:`.client_reads`,
  :mod:`.client_buckets`: ``Client``, one class written by concern (construction and
  lifecycle; ``put*`` and bulk; ``get*``; metadata, listings and deletes).
- :mod:`.dispatch`: ``Dispatcher``, the one way a request is sent (router choice, breaker, retry
  via :mod:`mictlanx_sync.protocol.retrying`); :mod:`.executor`: ``BoundedExecutor``, the
  transfer pool and the buffer budget; :mod:`.coordinator`: ``TransferCoordinator``, the one
  bounded parallel loop of an object's chunks; :mod:`.lifecycle`: closing and fork.
- :mod:`.writes`, :mod:`.sources`, :mod:`.bulk`: the write operations and their chunk sources.
- :mod:`.reads`: the read operations; :mod:`.transfer`, the chunk transfer loop (cache first,
  then R11) and the whole-object check; :mod:`.fetch`, one chunk from R11, verified, failing
  over to other replicas on bad copies; :mod:`.sinks`, where chunk bytes land (result buffer
  or ``.part`` file); :mod:`.files`, the local file helpers of ``get_to_file``.
- :mod:`.layout`: chunk keys, offsets and the §P5 selection rules; :mod:`.options`: the
  upstream-shaped keyword arguments into settings; :mod:`.progress`: progress bars.
- :mod:`.breaker`: ``RouterBreaker`` / ``NullBreaker``, pybreaker behind our interface.
- :mod:`.balancer`: ``Balancer``, router choice per attempt with in-flight leases.
- :mod:`.cache`: ``ChunkCache``, the content-addressed chunk cache (diskcache) and the
  per-version index.
"""
