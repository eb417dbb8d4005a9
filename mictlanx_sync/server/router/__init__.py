"""The MictlanX router (protocol §P4): placement, replication, fan-out reads and deletes.

``create_app(RouterConfig(...))`` in :mod:`.app` builds the ASGI app; ``mictlanx-sync
router`` (:mod:`.cli`) runs it. :mod:`.placement` is pure and importable without the
server extra.
"""
