"""The line between the scaling process and its front process: JSON messages, one per line.

A Unix socket pair made before the front starts, so nothing else can connect and nothing
is exposed on the network (the TLS key travels over it once, in the hello). JSON keeps
both ends readable in a debugger; at a few hundred decisions a second it is cheap.
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
