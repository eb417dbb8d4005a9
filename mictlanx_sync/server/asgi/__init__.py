"""The small ASGI layer the peer and the router are both written on (no framework on the data path).

- :mod:`.request`: ``Request`` (headers, query, body) and ``RequestBody``, the one body loop,
  with the one rule for a client that disconnects mid-body (``ClientDisconnected``, never a
  truncated body taken for a whole one).
- :mod:`.multipart`: the streaming ``multipart/form-data`` parser of P2 and R6.
- :mod:`.responses`: ``Response``, ``StreamedJSON`` and the JSON encoding of answers.
- :mod:`.routing`: ``Route`` and ``RouteTable``: one handler signature, the precedence rules of
  protocol §2.9, path ids validated by name.
- :mod:`.app`: ``RoutedApp``, the ASGI application both servers subclass: lifespan, routing,
  error answers.
- :mod:`.errors`, :mod:`.paths`, :mod:`.access_log`: error answers, raw-path checks, the
  access log.

The values of the protocol (ids, booleans, Range, Chunk-Size, the phase-2 rules) are parsed
outside it, in ``server.request_values`` and ``server.phase2``; the layer imports neither.
"""
