"""mTLS identities end to end: a real TLS gRPC server requiring client certificates,
the caller named by the SPIFFE ID in its certificate (DESIGN §7, issue 5)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from capgate.local.redis_server import RedisServer
from capgate_client import AsyncClient
from tests.conftest import DEFAULT_BUNDLE, RunningCapgate, start_capgate
from tests.identity_keys import Issued, issue_cert, make_ca

TRUST_DOMAIN = "capgate.test"


@dataclass(frozen=True)
class Pki:
    ca: Issued
    directory: Path

    def client(self, *uris: str) -> grpc.ChannelCredentials:
        leaf = issue_cert(self.ca, uris=uris)
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem.encode(),
            private_key=leaf.key_pem.encode(),
            certificate_chain=leaf.cert_pem.encode(),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    server = issue_cert(ca, ip_addresses=["127.0.0.1"], server=True)
    (directory / "ca.pem").write_text(ca.cert_pem)
    (directory / "server.pem").write_text(server.cert_pem)
    (directory / "server.key").write_text(server.key_pem)
    return Pki(ca, directory)


@pytest.fixture(scope="module")
async def running(
    redis_server: RedisServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningCapgate]:
    async with start_capgate(
        bundle=DEFAULT_BUNDLE,
        redis_url=redis_server.url,
        decision_log=tmp_path_factory.mktemp("mtls") / "decisions.jsonl",
        identity={"mode": "mtls", "spiffe": {"trust_domain": TRUST_DOMAIN}},
        tls={
            "cert_file": pki.directory / "server.pem",
            "key_file": pki.directory / "server.key",
            "client_ca_file": pki.directory / "ca.pem",
        },
    ) as capgate:
        yield capgate


def spiffe(tenant: str, principal: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/tenant/{tenant}/principal/{principal}"


REFUND = {
    "principal_id": "",
    "tenant_id": "",
    "capability": "issue_refund",
    "tool": "payments.create_refund",
    "parameters": {"amount_usd": 10},
    "workflow": "refund_request",
}


async def test_the_spiffe_id_names_tenant_and_principal(running: RunningCapgate, pki: Pki) -> None:
    tenant = f"t-{uuid.uuid4()}"
    credentials = pki.client(spiffe(tenant, "refund-agent"))
    async with AsyncClient(running.target, credentials=credentials) as client:
        result = await client.authorize(
            **REFUND,
            scopes=["refunds:write"],
            run_id=f"run-{uuid.uuid4()}",
            idempotency_key=str(uuid.uuid4()),
        )
    event = await running.event_for(result.decision_id)
    assert (event["tenant_id"], event["principal"]["id"]) == (tenant, "refund-agent")
    assert event["input"]["identity"]["method"] == "mtls"
    # no scopes come from a certificate: the policy refuses the refund for that reason
    assert result.reason_codes == ("MISSING_SCOPE",)


@pytest.mark.parametrize(
    "uris",
    [
        (),  # no SPIFFE ID
        (spiffe("a", "x"), spiffe("a", "y")),  # two
        ("spiffe://elsewhere.test/tenant/a/principal/x",),  # another trust domain
        (f"spiffe://{TRUST_DOMAIN}/workload/x",),  # not the configured shape
    ],
)
async def test_certificates_without_exactly_one_matching_spiffe_id_are_refused(
    running: RunningCapgate, pki: Pki, uris: tuple[str, ...]
) -> None:
    async with AsyncClient(running.target, credentials=pki.client(*uris)) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.authorize(**REFUND, run_id="r", idempotency_key=str(uuid.uuid4()))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_body_naming_another_principal_is_refused(
    running: RunningCapgate, pki: Pki
) -> None:
    credentials = pki.client(spiffe("acme", "refund-agent"))
    async with AsyncClient(running.target, credentials=credentials) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.authorize(**{**REFUND, "principal_id": "admin"}, run_id="r")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_client_without_a_certificate_cannot_connect(
    running: RunningCapgate, pki: Pki
) -> None:
    plain_tls = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem.encode())
    async with AsyncClient(running.target, credentials=plain_tls, timeout_seconds=2) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.authorize(**REFUND, run_id="r")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
