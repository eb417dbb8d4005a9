"""Reference servers: storage peer, router and the local VSS launcher.

Needs the ``mictlanx_sync[server]`` extra. Imports only the pure protocol modules
(models, ids, sizes, uri, errors), never the client engine.
"""
