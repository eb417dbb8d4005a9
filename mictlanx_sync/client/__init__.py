"""The client: ``Client``, a thin facade over one transfer core (client-api §8, issue 15).

Modules, top to bottom; each calls only modules below it (docs/client-architecture.md):

- :mod:`.client`: ``Client``, the facade: upstream's call shapes into one operation's
  settings, handed to the component that does it. :mod:`.setup` builds its routers and log
  handlers; :mod:`.operation`, :mod:`.messages` and :mod:`.delete_order` name each user
  operation in logs and errors and catch a swapped positional delete.
- Operations: :mod:`.object_read` (``get``, ``get_to_file``, ``get_chunks``: one loop, three
  object sinks), :mod:`.object_write` (a put: staged chunks, then chunk 0, then R26),
  :mod:`.buckets` (stat, listings, deletes), :mod:`.bulk` (``put_bulk``). Their settings are
  made where they are used: :mod:`.read_options` (``ReadOptions``), :mod:`.write_options`
  (``WritePlan``), :mod:`.options` (upstream's keyword arguments), :mod:`.progress`.
- Chunk steps: :mod:`.locate` (R3, ``ObjectInfo``), :mod:`.chunk_task` (cache first, else
  fetch, then store), :mod:`.chunk_fetch` (R11 with replica failover), :mod:`.full_hash` (the
  whole-object check), :mod:`.object_sinks` and :mod:`.sinks` (where bytes land),
  :mod:`.chunk_upload` (R5 then R7), :mod:`.sources` (what a put reads), :mod:`.files`,
  :mod:`.layout` (chunk keys, tags and the §P5 rules), :mod:`.cache` (the chunk cache).
- The transfer core: :mod:`.coordinator` (``TransferCoordinator``, the one bounded parallel
  loop of an object's chunks, with abort and cleanup), :mod:`.executor` (``BoundedExecutor``,
  the transfer pool whose ``submit`` takes and gives back the buffer token),
  :mod:`.dispatch` (``Dispatcher``, the one way a request is sent: router choice through
  :mod:`.balancer`, breakers of :mod:`.breaker`, the one retry layer), :mod:`.lifecycle`
  (closing, the root call scope, fork).
"""
