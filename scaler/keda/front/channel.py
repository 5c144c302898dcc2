"""The line between the scaling process and its front process: JSON messages, one per line.

A Unix socket pair made before the front starts, so nothing else can connect and nothing
is exposed on the network (the TLS key travels over it once, in the hello). JSON keeps
both ends readable in a debugger; at a few hundred decisions a second it is cheap.

The messages (``t`` names each; ids are the front's numbers for one ScaledObject identity,
namespace + name + exact metadata; a verdict is ``Verdict.to_json()``):

- scaling -> front: ``hello`` {host, port, tls, grace_s, idle_s, the gRPC limits and
  keepalive} once; ``verdicts``
  {items: [[id, verdict, valid_for_s], ...]}, pushed after decisions and as answers to asks;
  ``sync`` {n}: reply with a report, then ``synced``;
- front -> scaling: ``ready`` {port} or ``failed`` {error} once; ``ask`` {id, namespace,
  name, metadata, held}: resolve this ScaledObject now (``held``: for an open stream, which
  only keeps its workload alive); ``asked`` {ids, held, calls: [[method, code, [seconds or
  null, ...]], ...]} once a second; ``synced`` {n}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

LINE_LIMIT_BYTES = 64 * 1024 * 1024  # one batch of every workload's verdict fits easily

Message = dict[str, Any]


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT_BYTES)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue one message; ``drain`` waits until the other end has taken it."""
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def drain(self) -> None:
        await self._writer.drain()

    async def receive(self) -> Message | None:
        """The next message; None once the other end has closed (or died)."""
        try:
            line = await self._reader.readline()
        except (ConnectionError, asyncio.IncompleteReadError):
            return None
        if not line:
            return None
        message = json.loads(line)
        if not isinstance(message, dict) or not isinstance(message.get("t"), str):
            raise ValueError(f"not a channel message: {line[:200]!r}")
        return message

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
