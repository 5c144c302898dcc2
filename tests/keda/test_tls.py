"""TLS and mutual TLS as KEDA dials them, HTTPS, read-only HTTP, and no secret in any log.

A throwaway PKI is made per module: a server CA and the scaler's certificate (SANs
127.0.0.1 and localhost), a separate client CA and KEDA's client certificate, and certificates
from CAs that must not be trusted. The real gRPC and HTTP servers are started with the
settings a user writes, and called with real TLS clients: grpc's ``ssl_channel_credentials``
(what KEDA builds from ``caCert``, ``tlsClientCert`` and ``tlsClientKey``) and aiohttp.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scaler.commands.serve import RunningApp, start_app
from scaler.config.load import ConfigError, load_tls, needs_restart, parse_config
from scaler.config.settings import ServiceConfig
from scaler.keda.http_server import build_app
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock
from tests.conftest import make_config, scrape_all, wait_until

NS, NAME = "llm", "llama-8b"
RPC_TIMEOUT_S = 10.0

# --- a throwaway PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """One certificate and its key, as PEM bytes and as files."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: Path
    key_file: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(directory: Path, stem: str, common_name: str, *, issuer: Issued | None = None,
           ca: bool = False, sans: list[x509.GeneralName] | None = None,
           usage: x509.ObjectIdentifier | None = None) -> Issued:
    """A certificate signed by ``issuer`` (self-signed without one), written to files."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name))
               .issuer_name(issuer.cert.subject if issuer else _name(common_name))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    return Issued(cert_pem, key_pem, cert_file, key_file, cert, key)


@dataclass(frozen=True)
class Pki:
    server_ca: Issued
    server: Issued  # signed by server_ca, SANs 127.0.0.1 and localhost
    client_ca: Issued
    client: Issued  # KEDA's: signed by client_ca
    other_ca: Issued  # trusted by nobody
    other_client: Issued  # a client certificate signed by other_ca
    server_signed_client: Issued  # a client certificate from the server CA, not the client CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    server_ca = _issue(d, "server-ca", "scaler test server CA", ca=True)
    client_ca = _issue(d, "client-ca", "scaler test client CA", ca=True)
    other_ca = _issue(d, "other-ca", "some other CA", ca=True)
    server = _issue(d, "server", "llm-predictive-scaler", issuer=server_ca, sans=[
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue(d, "client", "keda-operator", issuer=client_ca,
                    usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_client = _issue(d, "other-client", "keda-operator", issuer=other_ca,
                          usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    server_signed_client = _issue(d, "server-signed-client", "keda-operator", issuer=server_ca,
                                  usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(server_ca, server, client_ca, client, other_ca, other_client,
               server_signed_client)


def tls_settings(pki: Pki, *, mutual: bool = False, http_tls: bool = False) -> dict[str, Any]:
    settings: dict[str, Any] = {"tls_cert_file": str(pki.server.cert_file),
                                "tls_key_file": str(pki.server.key_file), "http_tls": http_tls}
    if mutual:
        settings["tls_client_ca_file"] = str(pki.client_ca.cert_file)
    return settings


# --- the service and its clients ----------------------------------------------------------

StartApp = Callable[..., Awaitable[RunningApp]]


@pytest.fixture(params=[False, True], ids=["one process", "front process"])
async def start_tls_app(request: pytest.FixtureRequest) -> AsyncIterator[StartApp]:
    """Factory: the real gRPC and HTTP servers with the given server settings; all stopped.

    Each test runs with KEDA served by the scaling process and by a front process (which
    gets the TLS material from the scaling process and must serve it the same way)."""
    started: list[RunningApp] = []

    async def start(**server: Any) -> RunningApp:
        config = make_config({"front_process": request.param, **server}, timeout_s=1.0)
        service = ScalerService(config, clock=ManualClock(), background=False)
        app = await start_app(config, service)
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


@pytest.fixture
async def busy_pod(pods: Callable[[], Awaitable[EmulatedVllmPod]]) -> EmulatedVllmPod:
    """An emulated vLLM pod with requests waiting: IsActive is true whatever the policy."""
    pod = await pods()
    pod.engines = [EngineState(waiting=3)]
    return pod


def ref(*urls: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=NAME, namespace=NS,
                              scalerMetadata={"endpoints": ",".join(urls)})


def tls_channel(app: RunningApp, *, trust: Issued | None, client: Issued | None = None,
                host: str = "127.0.0.1") -> grpc.aio.Channel:
    """A channel as KEDA opens it from caCert (+ tlsClientCert/tlsClientKey)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=trust.cert_pem if trust else None,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None)
    return grpc.aio.secure_channel(f"{host}:{app.grpc_port}", credentials)


def plaintext_channel(app: RunningApp) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")


async def answers(channel: grpc.aio.Channel, app: RunningApp, pod_url: str) -> bool:
    """GetMetricSpec then, after a scrape, IsActive: KEDA's calls, through the channel."""
    async with channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        request = ref(pod_url)
        spec = await keda.GetMetricSpec(request, timeout=RPC_TIMEOUT_S)
        assert spec.metricSpecs[0].metricName == "desired-replicas"
        await scrape_all(app)
        active = await keda.IsActive(request, timeout=RPC_TIMEOUT_S)
        return bool(active.result)


async def refused(channel: grpc.aio.Channel, app: RunningApp) -> None:
    """The RPC fails at the transport, and the service never saw it."""
    request = pb.ScaledObjectRef(name="refused", namespace=NS,
                                 scalerMetadata={"endpoints": "http://127.0.0.1:1/metrics"})
    async with channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await keda.GetMetricSpec(request, timeout=RPC_TIMEOUT_S)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    assert all(workload.key.name != "refused" for workload in app.service.registry)


# --- (a)-(c) TLS --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_tls_client_trusting_the_ca_gets_answers(start_tls_app, pki, busy_pod, host):
    app = await start_tls_app(**tls_settings(pki))
    channel = tls_channel(app, trust=pki.server_ca, host=host)
    assert await answers(channel, app, busy_pod.url) is True


async def test_a_plaintext_client_is_refused_by_the_tls_port(start_tls_app, pki):
    app = await start_tls_app(**tls_settings(pki))
    await refused(plaintext_channel(app), app)


async def test_a_client_not_trusting_the_ca_is_refused(start_tls_app, pki):
    app = await start_tls_app(**tls_settings(pki))
    await refused(tls_channel(app, trust=pki.other_ca), app)


async def test_without_tls_settings_grpc_stays_plaintext(start_tls_app, pki, busy_pod):
    app = await start_tls_app()
    assert await answers(plaintext_channel(app), app, busy_pod.url) is True
    await refused(tls_channel(app, trust=pki.server_ca), app)


# --- (d) mutual TLS -----------------------------------------------------------------------


async def test_mutual_tls_accepts_a_client_certificate_from_the_client_ca(
        start_tls_app, pki, busy_pod):
    app = await start_tls_app(**tls_settings(pki, mutual=True))
    channel = tls_channel(app, trust=pki.server_ca, client=pki.client)
    assert await answers(channel, app, busy_pod.url) is True


async def test_mutual_tls_refuses_a_client_without_a_certificate(start_tls_app, pki):
    app = await start_tls_app(**tls_settings(pki, mutual=True))
    await refused(tls_channel(app, trust=pki.server_ca), app)


@pytest.mark.parametrize("which", ["other_client", "server_signed_client"])
async def test_mutual_tls_refuses_a_certificate_from_another_ca(start_tls_app, pki, which):
    app = await start_tls_app(**tls_settings(pki, mutual=True))
    await refused(tls_channel(app, trust=pki.server_ca, client=getattr(pki, which)), app)


# --- (e) HTTPS and read-only HTTP ---------------------------------------------------------


def trusting(ca: Issued) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert_file))


async def test_https_with_http_tls(start_tls_app, pki):
    app = await start_tls_app(**tls_settings(pki, mutual=True, http_tls=True))
    async with aiohttp.ClientSession() as http:
        # No client certificate: probes and Prometheus have none, mutual TLS is gRPC's only.
        async with http.get(f"https://localhost:{app.http_port}/readyz",
                            ssl=trusting(pki.server_ca)) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ready"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.get(f"https://localhost:{app.http_port}/healthz",
                           ssl=trusting(pki.other_ca))
        with pytest.raises(aiohttp.ClientError):
            await http.get(f"http://127.0.0.1:{app.http_port}/healthz")


async def test_http_stays_plain_unless_http_tls(start_tls_app, pki):
    app = await start_tls_app(**tls_settings(pki))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{app.http_port}/healthz") as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientError):
            await http.get(f"https://localhost:{app.http_port}/healthz",
                           ssl=trusting(pki.server_ca))


def _route_paths() -> list[tuple[str, set[str]]]:
    """Every route of the HTTP app, with placeholders filled, and the methods it takes."""
    routes = build_app(ScalerService(ServiceConfig(), background=False)).router.routes()
    paths: dict[str, set[str]] = {}
    for route in routes:
        canonical = route.resource.canonical if route.resource else ""
        path = canonical.format(namespace=NS, name=NAME)
        paths.setdefault(path, set()).add(route.method)
    return sorted(paths.items())


def test_every_route_is_get_or_head():
    routes = _route_paths()
    assert len(routes) >= 4
    for path, methods in routes:
        assert methods <= {"GET", "HEAD"}, (path, methods)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_writes_to_any_route_are_405(app, method):
    async with aiohttp.ClientSession() as http:
        for path, _methods in _route_paths():
            url = f"http://127.0.0.1:{app.http_port}{path}"
            async with http.request(method, url, data=b"{}") as resp:
                assert resp.status == 405, (method, path, resp.status)
                assert set(resp.headers["Allow"].split(",")) <= {"GET", "HEAD"}
    assert len(app.service.registry) == 0


# --- (f) validation -----------------------------------------------------------------------


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def server_yaml(**keys: Any) -> str:
    lines = "".join(f"  {key}: {value!r}\n" if isinstance(value, str) else
                    f"  {key}: {str(value).lower()}\n" for key, value in keys.items())
    return f"server:\n{lines}"


def test_good_tls_settings_load_and_are_read_at_start(pki):
    config = parse_config(server_yaml(**tls_settings(pki, mutual=True, http_tls=True)))
    server = config.server
    assert (server.tls_mode, server.http_tls) == ("mutual TLS", True)
    material = load_tls(server)
    assert material is not None
    assert material.cert_chain == pki.server.cert_pem
    assert material.private_key == pki.server.key_pem
    assert material.client_ca == pki.client_ca.cert_pem
    assert load_tls(ServiceConfig().server) is None
    assert ServiceConfig().server.tls_mode == "plaintext"
    assert needs_restart(ServiceConfig(), config) == ["server"]


def test_a_certificate_without_its_key_names_the_missing_key(pki):
    problems = problems_of(server_yaml(tls_cert_file=str(pki.server.cert_file)))
    assert problems == ["server.tls_key_file: required with server.tls_cert_file (the path of "
                        "that certificate's PEM private key)"]


def test_a_key_without_its_certificate_names_the_missing_key(pki):
    problems = problems_of(server_yaml(tls_key_file=str(pki.server.key_file)))
    assert problems == ["server.tls_cert_file: required with server.tls_key_file (the path of "
                        "the PEM certificate of that key)"]


def test_a_client_ca_or_https_without_a_certificate_names_each_key(pki):
    problems = problems_of(server_yaml(tls_client_ca_file=str(pki.client_ca.cert_file),
                                       http_tls=True))
    assert len(problems) == 2
    assert problems[0].startswith("server.tls_client_ca_file: needs server.tls_cert_file and "
                                  "server.tls_key_file")
    assert problems[1].startswith("server.http_tls: needs server.tls_cert_file and "
                                  "server.tls_key_file")


def test_missing_files_name_each_key_and_path(tmp_path):
    cert, key, ca = (tmp_path / name for name in ("tls.crt", "tls.key", "ca.crt"))
    problems = problems_of(server_yaml(tls_cert_file=str(cert), tls_key_file=str(key),
                                       tls_client_ca_file=str(ca)))
    assert problems == [
        f"server.{k}: cannot read {path}: No such file or directory (mount the Secret there "
        "or correct the path)"
        for k, path in (("tls_cert_file", cert), ("tls_key_file", key),
                        ("tls_client_ca_file", ca))]


def test_files_of_the_wrong_kind_name_the_key(pki, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    problems = problems_of(server_yaml(tls_cert_file=str(pki.server.key_file),
                                       tls_key_file=str(pki.server.cert_file),
                                       tls_client_ca_file=str(garbage)))
    assert problems == [
        f"server.tls_cert_file: {pki.server.key_file} is not a PEM certificate (no "
        "'-----BEGIN ...' block of that kind): give the PEM file",
        f"server.tls_key_file: {pki.server.cert_file} is not a PEM private key (no "
        "'-----BEGIN ...' block of that kind): give the PEM file",
        f"server.tls_client_ca_file: {garbage} is not a PEM CA certificate (no "
        "'-----BEGIN ...' block of that kind): give the PEM file"]


def test_a_key_of_another_certificate_names_the_key_file(pki):
    problems = problems_of(server_yaml(tls_cert_file=str(pki.server.cert_file),
                                       tls_key_file=str(pki.client.key_file)))
    assert problems == [f"server.tls_key_file: {pki.client.key_file} is not the private key of "
                        f"{pki.server.cert_file} (server.tls_cert_file): give the key that "
                        "certificate was issued for"]


def test_a_damaged_pem_body_names_the_certificate_key(pki, tmp_path):
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    problems = problems_of(server_yaml(tls_cert_file=str(broken),
                                       tls_key_file=str(pki.server.key_file)))
    assert len(problems) == 1
    assert problems[0].startswith(f"server.tls_cert_file: {broken} with the key in "
                                  f"{pki.server.key_file} does not load (")


def test_an_encrypted_key_is_refused_with_what_to_do(pki, tmp_path):
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(pki.server.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass")))
    problems = problems_of(server_yaml(tls_cert_file=str(pki.server.cert_file),
                                       tls_key_file=str(encrypted)))
    assert problems == [f"server.tls_key_file: {encrypted} is an encrypted private key, which "
                        "gRPC cannot use: store it decrypted in the Secret (openssl pkey -in KEY "
                        "-out PLAIN_KEY)"]


def test_a_bad_value_is_reported_alone_without_a_cross_key_echo(pki):
    problems = problems_of(server_yaml(tls_cert_file=str(pki.server.cert_file), tls_key_file=7))
    assert len(problems) == 1
    assert problems[0].startswith("server.tls_key_file: 7 is not a string")


async def test_files_gone_by_start_stop_the_start_naming_the_key(pki, tmp_path):
    key = tmp_path / "tls.key"
    key.write_bytes(pki.server.key_pem)
    config = parse_config(server_yaml(tls_cert_file=str(pki.server.cert_file),
                                      tls_key_file=str(key), http_tls=True))
    key.unlink()  # e.g. the Secret was deleted after the config was validated
    with pytest.raises(ConfigError) as info:
        await start_app(dataclasses.replace(config, server=dataclasses.replace(
            config.server, host="127.0.0.1", grpc_port=0, http_port=0)))
    assert info.value.problems == [f"server.tls_key_file: cannot read {key}: No such file or "
                                   "directory (mount the Secret there or correct the path)"]


# --- (g) no secret in logs ----------------------------------------------------------------


def _secret_lines(pem: bytes) -> list[str]:
    """The lines of a PEM key that must never be logged: the header and each body line."""
    lines = [line.strip() for line in pem.decode().splitlines() if line.strip()]
    assert any("PRIVATE KEY" in line for line in lines) and len(lines) >= 3
    return ["PRIVATE KEY", *(line for line in lines if not line.startswith("-----"))]


def _logged_text(records: list[logging.LogRecord]) -> str:
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return "\n".join(handler.format(record) for record in records)


def _assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"secret material in the logs: {leaked}"


async def test_tls_key_material_never_reaches_the_logs(start_tls_app, pki, busy_pod, caplog,
                                                       capfd):
    caplog.set_level(logging.DEBUG)
    app = await start_tls_app(**tls_settings(pki, mutual=True, http_tls=True))
    assert await answers(tls_channel(app, trust=pki.server_ca, client=pki.client), app,
                         busy_pod.url) is True
    await refused(plaintext_channel(app), app)
    await refused(tls_channel(app, trust=pki.server_ca), app)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://localhost:{app.http_port}/metrics",
                            ssl=trusting(pki.server_ca)) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientError):
            await http.get(f"http://127.0.0.1:{app.http_port}/healthz")
    # What a user might log while debugging: the config and the material's repr.
    material = load_tls(app.service.config.server)
    logging.getLogger("scaler.test").debug("config %r, tls %r", app.service.config, material)

    text = _logged_text(caplog.records)
    # The start-up line says how gRPC is served and from which files, so it was captured.
    assert (f"(mutual TLS, certificate {pki.server.cert_file}, client certificates required, "
            f"signed by {pki.client_ca.cert_file})") in text
    assert "HTTPS listening on 127.0.0.1" in text
    secrets = _secret_lines(pki.server.key_pem) + _secret_lines(pki.client.key_pem)
    _assert_no_secret(text, secrets)
    out, err = capfd.readouterr()  # gRPC's C core writes its own log lines to stderr
    _assert_no_secret(out + err, secrets)


async def test_a_bad_key_file_is_named_without_its_contents(pki, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key = tmp_path / "other.key"
    key.write_bytes(pki.client.key_pem)  # a real key, of another certificate
    with pytest.raises(ConfigError) as info:
        parse_config(server_yaml(tls_cert_file=str(pki.server.cert_file), tls_key_file=str(key)))
    _assert_no_secret(str(info.value) + _logged_text(caplog.records),
                      _secret_lines(pki.client.key_pem))


async def test_the_kubernetes_bearer_token_is_never_logged(tmp_path, monkeypatch, caplog):
    """The service loads a kubeconfig with a token and hits API errors, all at DEBUG."""
    token = "kube-token-" + "9f3c2a7e51b04d68" * 3
    seen: list[str] = []

    async def forbidden(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
            "message": 'pods is forbidden: User "system:serviceaccount:llm-scaler:scaler" '
                       'cannot list resource "pods" in API group "" in the namespace '
                       '"gpu-operator"', "code": 403}, status=403)

    api_server = web.Application()
    api_server.router.add_route("*", "/{tail:.*}", forbidden)
    runner = web.AppRunner(api_server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: test, user: {{token: {token}}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test}}}}]
current-context: test
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    caplog.set_level(logging.DEBUG)
    config = make_config()
    config = dataclasses.replace(config, gpu=dataclasses.replace(
        config.gpu, selector="app=nvidia-dcgm-exporter"))
    service = ScalerService(config, clock=ManualClock(), background=False)
    await service.start()  # loads the kubeconfig; the dcgm-exporter discovery starts listing
    try:
        await wait_until(lambda: "pods is forbidden" in caplog.text)
    finally:
        await service.stop()
        api = service.kube_api()
        if api is not None:  # the service leaves the client it loaded open
            await api.close()
        await runner.cleanup()
    assert f"Bearer {token}" in seen  # the token was loaded and used...
    assert token not in _logged_text(caplog.records)  # ...and never logged
