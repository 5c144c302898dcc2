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
import dataclasses
import logging
import os
from pathlib import Path
from typing import Literal

from kubernetes_asyncio.client import CoreV1Api

from adapters.kubernetes.events import ObjectRef, post_event
from scaler.config.load import ConfigError, parse_config
from scaler.config.settings import ServerSettings
from scaler.service.service import ScalerService
from scaler.service.supervise import supervise

log = logging.getLogger("scaler.config")

Outcome = Literal["applied", "rejected", "unchanged"]
CONFIGMAP_ENV = "SCALER_CONFIGMAP"  # "namespace/name" of the mounted ConfigMap, for Events


class ConfigWatcher:
    def __init__(self, path: str | Path, service: ScalerService, *,
                 interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self.service = service
        self.interval_s = interval_s
        self._last_text: str | None = None
        self._started_server: ServerSettings | None = None

    def started_from(self, text: str) -> None:
        """The file's text the service started with: not a change, not counted as a reload.

        Its ``server`` section may differ from the running one by command-line overrides
        (``--grpc-port``...); while the file keeps that section, the running one stands.
        """
        self._last_text = text
        try:
            self._started_server = parse_config(text, source=str(self.path)).server
        except ConfigError:
            self._started_server = None

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
            self._tell_the_configmap(exc.problems)
            return "rejected"
        if self._started_server is not None and config.server == self._started_server:
            config = dataclasses.replace(config, server=self.service.config.server)
        for setting in self.service.apply_config(config):
            log.warning("config %s: '%s' changed; it takes effect at the next restart",
                        self.path, setting)
        log.info("config %s applied", self.path)
        self.service.telemetry.config_reloads.labels("applied").inc()
        return "applied"

    def _tell_the_configmap(self, problems: list[str]) -> None:
        """A Warning Event on the ConfigMap named by $SCALER_CONFIGMAP ("namespace/name")."""
        ref = os.environ.get(CONFIGMAP_ENV, "")
        api = self.service.kube_api() if ref.count("/") == 1 else None
        if api is None:
            return
        namespace, name = ref.split("/")
        message = f"rejected, last good config kept: {'; '.join(problems)}"[:1000]
        self.service.spawn(post_event(
            CoreV1Api(api), namespace=namespace, type_="Warning", reason="ConfigRejected",
            involved=ObjectRef("ConfigMap", name, namespace, "v1"), message=message),
            "config rejected event")

    async def run(self) -> None:
        """Check every ``interval_s``; the file is read in a thread, applied on the loop."""
        await supervise(f"config {self.path} check", self._check_in_a_thread, self.interval_s,
                        log=log)

    async def _check_in_a_thread(self) -> None:
        self.consider(await asyncio.to_thread(self._read))
