"""Live tuning from a mounted ConfigMap: re-read the file, validate it whole, apply or reject.

Kubernetes updates a mounted ConfigMap by swapping a symlink, which mtime-based watching
can miss; the file is small, so it is simply re-read every ``interval_s`` and compared with
the last text seen. A new text is parsed and validated as a whole: a bad one is rejected
(every bad key logged once, ``scaler_config_reloads_total{result="rejected"}``) and the last
good config stays in force; a good one is applied without a restart and without resetting
any forecaster (``ScalerService.apply_config``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Literal

from scaler.config import ConfigError, parse_config
from scaler.service import ScalerService

log = logging.getLogger("scaler.config")

Outcome = Literal["applied", "rejected", "unchanged"]


class ConfigWatcher:
    def __init__(self, path: str | Path, service: ScalerService, *,
                 interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self.service = service
        self.interval_s = interval_s
        self._last_text: str | None = None

    def check(self) -> Outcome:
        """Read the file now and apply or reject it if its text changed."""
        return self.consider(self._read())

    def consider(self, text: str | OSError) -> Outcome:
        if isinstance(text, OSError):
            return self._unreadable(text)
        if text == self._last_text:
            return "unchanged"
        self._last_text = text
        return self._reload(text)

    def _read(self) -> str | OSError:
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as exc:
            return exc

    def _unreadable(self, exc: OSError) -> Outcome:
        marker = f"<unreadable: {exc.strerror}>"
        if self._last_text != marker:
            self._last_text = marker
            log.warning("config %s cannot be read (%s); keeping the last good config",
                        self.path, exc.strerror)
            self.service.telemetry.config_reloads.labels("rejected").inc()
        return "rejected"

    def _reload(self, text: str) -> Outcome:
        try:
            config = parse_config(text, source=str(self.path))
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config %s rejected: %s", self.path, problem)
            log.error("config %s: keeping the last good config (fix the keys above)",
                      self.path)
            self.service.telemetry.config_reloads.labels("rejected").inc()
            return "rejected"
        for setting in self.service.apply_config(config):
            log.warning("config %s: '%s' changed; it takes effect at the next restart",
                        self.path, setting)
        log.info("config %s applied", self.path)
        self.service.telemetry.config_reloads.labels("applied").inc()
        return "applied"

    async def run(self) -> None:
        """Check every ``interval_s``; the file is read in a thread, applied on the loop."""
        while True:
            self.consider(await asyncio.to_thread(self._read))
            await asyncio.sleep(self.interval_s)
