"""The Kubernetes API client: in-cluster (the ServiceAccount), else the kubeconfig."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config


class KubeConfigError(Exception):
    pass


async def kube_client() -> client.ApiClient:
    """An ApiClient for the cluster this runs in, else the one KUBECONFIG (or ~/.kube/config)
    names; KubeConfigError saying which of both was tried when neither works."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration)
        return client.ApiClient(configuration)
    except config.ConfigException as in_cluster:
        path = kubeconfig_path()
        if not os.path.exists(path):  # noqa: ASYNC240 - once at start-up, a local stat
            raise KubeConfigError(f"not in a cluster ({in_cluster}) and no kubeconfig at "
                                  f"{path}") from in_cluster
        try:
            await config.load_kube_config(config_file=path,
                                          client_configuration=configuration)
        except (config.ConfigException, OSError, ValueError) as exc:
            raise KubeConfigError(f"not in a cluster, and the kubeconfig at {path} does not "
                                  f"load: {exc}") from exc
        return client.ApiClient(configuration)


def kubeconfig_path() -> str:
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
