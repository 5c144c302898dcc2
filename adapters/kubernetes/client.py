"""The Kubernetes API client: in-cluster (the ServiceAccount) or from the kubeconfig."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config


class KubeConfigError(Exception):
    pass


def kube_client() -> client.ApiClient:
    """An ApiClient for the cluster this runs in, else the one KUBECONFIG (or ~/.kube) names.

    Only the in-cluster path is synchronous in kubernetes_asyncio; a kubeconfig is read
    with the synchronous loader too (``load_kube_config_from_dict`` needs its content).
    """
    configuration = client.Configuration()
    try:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
        return client.ApiClient(configuration)
    except config.ConfigException as in_cluster:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if not os.path.exists(path):
            raise KubeConfigError(f"not in a cluster ({in_cluster}) and no kubeconfig at "
                                  f"{path}") from in_cluster
        raise KubeConfigError(
            f"not in a cluster ({in_cluster}); a kubeconfig at {path} is not loaded "
            "automatically yet: run the scaler in-cluster") from in_cluster
