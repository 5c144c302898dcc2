"""Kubernetes adapters: the pod model (``pods``), pod discovery through the API server
(``discovery``, with its failures in ``errors``), node actuators (``nodes``), Events
(``events``), leader election (``leader``) and the API client (``client``)."""
