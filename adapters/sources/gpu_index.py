"""GPU load of every pod, from the cluster's dcgm-exporter pods, scraped once for everyone.

dcgm-exporter runs as a DaemonSet: one page per node, each labelling its GPUs with the pod
and namespace that hold them. Scraping every page for every workload would cost workloads x
nodes requests per interval; here the pages are found through the Kubernetes API and scraped
once per interval into one index keyed by (namespace, pod), which every workload reads.
A page that fails keeps its last readings until it is stale, then they are dropped.
The service calls ``refresh`` once per scrape interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from adapters.formats.dcgm import GpuLoad, gpu_load_by_namespaced_pod, read_dcgm
from adapters.formats.promtext import PageError
from adapters.kubernetes.discovery import PodDiscovery
from adapters.sources.scrape import PageFetcher, ScrapeError

log = logging.getLogger("scaler.gpu")


class GpuIndex:
    def __init__(self, discovery: PodDiscovery, fetcher: Callable[[], PageFetcher | None], *,
                 now_s: Callable[[], float], stale_after_s: Callable[[], float]) -> None:
        self.discovery = discovery
        self._fetcher = fetcher
        self._now_s = now_s
        self._stale_after_s = stale_after_s
        self._pages: dict[str, tuple[float, dict[tuple[str, str], GpuLoad]]] = {}
        self._problems: dict[str, str] = {}

    def load(self, namespace: str, pod: str) -> GpuLoad | None:
        """The pod's GPU load from the freshest page that has it (None: no fresh reading)."""
        horizon = self._now_s() - self._stale_after_s()
        for taken, loads in self._pages.values():
            if taken >= horizon and (namespace, pod) in loads:
                return loads[(namespace, pod)]
        return None

    async def refresh(self) -> None:
        """Scrape every ready dcgm-exporter pod once; forget pages of pods that went away."""
        fetcher = self._fetcher()
        if fetcher is None or not self.discovery.synced.is_set():
            return
        urls = [url for _, url in self.discovery.ready_endpoints()]
        for gone in set(self._pages) - set(urls):
            del self._pages[gone]
        await asyncio.gather(*(self._scrape(fetcher, url) for url in urls))

    async def _scrape(self, fetcher: PageFetcher, url: str) -> None:
        try:
            readings = read_dcgm(await fetcher.fetch(url))
        except (ScrapeError, PageError) as exc:
            if self._problems.get(url) != str(exc):
                log.warning("dcgm-exporter %s: %s", url, exc)
            self._problems[url] = str(exc)
            return
        if self._problems.pop(url, None) is not None:
            log.info("dcgm-exporter %s recovered", url)
        self._pages[url] = (self._now_s(), gpu_load_by_namespaced_pod(readings))
