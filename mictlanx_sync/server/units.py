"""The byte units the servers' limits and piece sizes are written in."""

KIB = 1024
MIB = 1024 * KIB
