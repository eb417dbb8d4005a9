"""Write groups (protocol §P4.4): the router-side record of one R5 until its phase 2.

A group lives only in this router's memory for ``task_ttl`` (``exists_ttl`` when every
replica answered ``exists:true``) and is claimed by exactly one phase-2 request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from ...protocol.ids import new_task_id


@dataclass
class Replica:
    peer_id: str
    exists: bool


@dataclass
class Group:
    group_id: str
    bucket_id: str
    key: str
    size: int
    checksum: str
    content_type: str
    update: bool
    replicas: list[Replica]
    expires_at: float
    created_at: float = field(default_factory=time.monotonic)
    #: the version every replica writes (docs/consistency.md §2.1); "" only for legacy groups
    version: str = ""
    #: written staged (``Mictlanx-Stage: 1``): invisible until R26 commits ``version``
    stage: bool = False

    @property
    def exists(self) -> bool:
        return all(r.exists for r in self.replicas)


class Groups:
    def __init__(self, task_ttl: float = 600.0, exists_ttl: float = 60.0) -> None:
        self.task_ttl = task_ttl
        self.exists_ttl = exists_ttl
        self._groups: dict[str, Group] = {}

    @staticmethod
    def new_id() -> str:
        return new_task_id()

    def add(self, group_id: str, bucket_id: str, key: str, size: int, checksum: str, content_type: str,
            update: bool, replicas: list[Replica], version: str = "", stage: bool = False) -> Group:
        self.purge()
        exists = all(r.exists for r in replicas)
        ttl = self.exists_ttl if exists else self.task_ttl
        group = Group(group_id, bucket_id, key, size, checksum, content_type, update, replicas,
                      time.monotonic() + ttl, version=version, stage=stage)
        self._groups[group_id] = group
        return group

    def claim(self, group_id: str) -> Optional[Group]:
        """Remove and return the group if it is pending and not expired."""
        group = self._groups.pop(group_id, None)
        if group is None or group.expires_at < time.monotonic():
            return None
        return group

    def purge(self) -> None:
        now = time.monotonic()
        for group_id in [g for g, v in self._groups.items() if v.expires_at < now]:
            del self._groups[group_id]

    def __len__(self) -> int:
        return len(self._groups)
