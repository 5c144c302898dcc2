"""The service's outcomes as KEDA verdicts, for the gRPC server in this process and for the
front process's table alike: a decision is OK, ``Unavailable`` is UNAVAILABLE (KEDA's fallback
applies), bad metadata is INVALID_ARGUMENT. Both answer through these two functions, so a call
to either gets the same verdict for the same state.
"""

from __future__ import annotations

from scaler.keda.metadata import MetadataError
from scaler.keda.servicer import INVALID, UNAVAILABLE, Verdict
from scaler.service.service import ScalerService, Unavailable
from scaler.service.workloads import Workload


def verdict_of(service: ScalerService, workload: Workload) -> tuple[Verdict, float]:
    """The verdict now, and for how many seconds more it holds if nothing else happens.

    A decision holds while its data is fresh (``scrape.stale_after_s`` minus the data's
    age); an UNAVAILABLE verdict holds until the next decision (0 here; a front process asks
    again after a few seconds, and is pushed the next decision anyway).
    """
    try:
        answer = service.answer(workload)
    except Unavailable as exc:
        return Verdict(workload.spec.metric_name, UNAVAILABLE, str(exc)), 0.0
    decision = answer.decision
    fresh_s = max(0.0, service.config.scrape.stale_after_s - answer.data_age_s)
    return Verdict(workload.spec.metric_name, desired_replicas=decision.desired_replicas,
                   active=decision.active), fresh_s


def invalid(error: MetadataError) -> Verdict:
    """Bad metadata: no metric name to serve, every bad key in the message."""
    return Verdict("", INVALID, str(error))
