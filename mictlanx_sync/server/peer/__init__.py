"""The reference storage peer (protocol §3): ASGI app, file store and SQLite index.

Nothing here is imported by the client; ``cli.run`` imports uvicorn and the app lazily.
"""
