"""Command-line tools built on the Client (``mictlanx-sync demo`` and friends)."""
