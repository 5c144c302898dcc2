"""Starting the front process so that it keeps a higher CPU priority than its parent.

On Linux the nice value belongs to a thread, and a child process inherits the nice value of
the thread that started it. The scaling process lowers its event loop's priority once the
front runs (answers before parsing); fronts are started from a thread created before that,
so a front started again later still gets the original priority.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

SCALING_NICE = 5  # how far the scaling process lowers its own priority once a front runs


class FrontChild:
    """A started front process: ``pid``, ``returncode``, ``kill``, ``send_signal``, ``wait``.

    Started from a thread that keeps this process's original CPU priority: on Linux the nice
    value belongs to a thread and a child inherits its parent thread's, so a front started
    again after this process lowered its own priority still gets the original one.
    """

    _spawner: ThreadPoolExecutor | None = None
    _lowered = False  # this process's event loop thread has yielded already

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    @classmethod
    async def spawn(cls, args: list[str], *, pass_fds: tuple[int, ...]) -> FrontChild:
        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(args, pass_fds=pass_fds)

        return cls(await asyncio.get_running_loop().run_in_executor(
            cls._spawning_thread(), start))

    @classmethod
    def _spawning_thread(cls) -> ThreadPoolExecutor:
        if cls._spawner is None:
            cls._spawner = ThreadPoolExecutor(1, thread_name_prefix="front spawner")
            cls._spawner.submit(lambda: None).result()  # the thread exists from now on
        return cls._spawner

    @classmethod
    def lower_priority_of_this_thread(cls) -> None:
        cls._spawning_thread()  # created before, so fronts keep the original priority
        if not cls._lowered:
            cls._lowered = True
            os.nice(SCALING_NICE)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def send_signal(self, signum: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def kill_and_reap(self) -> None:
        """Kill and wait, without awaiting (usable while being cancelled)."""
        self.kill()
        self._popen.wait()

    async def wait(self) -> int:
        """The exit status, once the process has ended (a pidfd: no thread, no polling)."""
        if (status := self._popen.poll()) is not None:
            return status
        loop = asyncio.get_running_loop()
        if not hasattr(os, "pidfd_open"):  # not Linux: a thread waits
            return await loop.run_in_executor(None, self._popen.wait)
        pidfd = os.pidfd_open(self.pid)
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(pidfd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()


def yield_cpu_to_the_front() -> None:
    """Lower this thread's CPU priority (the event loop's) by ``SCALING_NICE``, once per
    process however many fronts it starts (tests start many)."""
    FrontChild.lower_priority_of_this_thread()
