"""The protocol layer: wire models, errors, ids, sizes, URI (pure) and Peer/Router (I/O).

It knows HTTP and JSON; it knows nothing of chunks or caches.
"""
