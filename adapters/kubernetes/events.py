"""Post Kubernetes Events about what the scaler did (or, in dry-run, would do) to an object.

Events are how an operator sees a node decision next to the object it concerns
(``kubectl describe machinedeployment ...``). They are best effort by design: a lost Event must
never stop a scaling decision, so ``post_event`` logs a failure and returns False instead of
raising. The Event is a core/v1 Event shaped as client-go's recorder writes one: a name
``<involved name>.<hex nanoseconds>`` (unique without a server round-trip), ``count`` 1, the
same first and last timestamp, ``source.component`` and ``reportingComponent`` set.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable
from typing import Literal

from kubernetes_asyncio.client import (
    CoreV1Api,
    CoreV1Event,
    V1EventSource,
    V1ObjectMeta,
    V1ObjectReference,
)

__all__ = ["COMPONENT", "EventType", "ObjectRef", "event_body", "post_event"]

log = logging.getLogger(__name__)

COMPONENT = "llm-predictive-scaler"
EventType = Literal["Normal", "Warning"]


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about (its ``involvedObject``)."""

    kind: str
    name: str
    namespace: str
    api_version: str
    uid: str = ""


def event_body(*, namespace: str, involved: ObjectRef, reason: str, message: str,
               type_: EventType, component: str, now_s: float) -> CoreV1Event:
    """The core/v1 Event to create (timestamps in whole seconds, as the API stores them)."""
    stamp = datetime.datetime.fromtimestamp(int(now_s), tz=datetime.UTC)
    ref = V1ObjectReference(kind=involved.kind, name=involved.name,
                            namespace=involved.namespace, api_version=involved.api_version,
                            uid=involved.uid or None)
    meta = V1ObjectMeta(name=f"{involved.name}.{int(now_s * 1e9):x}", namespace=namespace)
    return CoreV1Event(metadata=meta, involved_object=ref, reason=reason, message=message,
                       type=type_, source=V1EventSource(component=component),
                       reporting_component=component, first_timestamp=stamp,
                       last_timestamp=stamp, count=1)


async def post_event(api: CoreV1Api, *, namespace: str, involved: ObjectRef, reason: str,
                     message: str, type_: EventType = "Normal", component: str = COMPONENT,
                     clock: Callable[[], float] = time.time) -> bool:
    """Create the Event; True if the API server took it.

    Never raises (except on cancellation): a failure is logged as a warning and gives False.
    """
    body = event_body(namespace=namespace, involved=involved, reason=reason, message=message,
                      type_=type_, component=component, now_s=clock())
    try:
        await api.create_namespaced_event(namespace, body)
    except Exception as exc:
        log.warning("could not post Event %s about %s %s/%s: %s: %s", reason, involved.kind,
                    involved.namespace, involved.name, type(exc).__name__, exc)
        return False
    return True
