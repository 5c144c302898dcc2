"""The service's outcomes as KEDA verdicts, for the gRPC server in this process and for the
front process's table alike: a decision is OK, ``Unavailable`` is UNAVAILABLE (KEDA's fallback
applies), bad metadata is INVALID_ARGUMENT, metadata past an operator limit
RESOURCE_EXHAUSTED. Both answer through these functions, so a call to either gets the same
verdict for the same state.
"""

from __future__ import annotations

from scaler.keda.metadata import MetadataError
from scaler.keda.servicer import EXHAUSTED, INVALID, UNAVAILABLE, Verdict
from scaler.service.service import LimitExceeded, ScalerService, Unavailable
from scaler.service.workloads import Workload

# What resolving a ScaledObject can raise instead of giving its workload.
REFUSALS = (MetadataError, LimitExceeded, Unavailable)


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


def refused(error: MetadataError | LimitExceeded | Unavailable) -> Verdict:
    """A call refused before it reached a workload (one of ``REFUSALS``)."""
    if isinstance(error, MetadataError):
        return invalid(error)
    if isinstance(error, LimitExceeded):
        return Verdict("", EXHAUSTED, str(error))
    return Verdict("", UNAVAILABLE, str(error))
