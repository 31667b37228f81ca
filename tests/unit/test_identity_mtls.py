"""Unit tests for capgate.identity.mtls: real CA and client certificates, SPIFFE IDs."""

from __future__ import annotations

from typing import Any

import pytest

from capgate.errors import ConfigError, Unauthenticated
from capgate.identity.model import Credentials, Identity
from capgate.identity.mtls import MtlsAuthenticator, SpiffeId, parse_spiffe_id
from capgate.settings import SpiffeSettings
from tests.identity_keys import Issued, issue_cert, make_ca

TRUST_DOMAIN = "example.org"
REFUND_AGENT = "spiffe://example.org/tenant/acme/principal/refund-agent"
DEFAULT_PATTERN = SpiffeSettings().id_pattern


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


@pytest.fixture
def authenticator() -> MtlsAuthenticator:
    return MtlsAuthenticator(
        trust_domain=TRUST_DOMAIN,
        id_pattern=DEFAULT_PATTERN,
        roles={REFUND_AGENT: ["payments", "ops"]},
    )


def peer(ca: Issued, *uris: str) -> Credentials:
    return Credentials(peer_certificate_pem=issue_cert(ca, uris=uris).cert_pem, peer="ipv4:1.2.3.4")


def test_spiffe_id_names_the_caller(authenticator: MtlsAuthenticator, ca: Issued) -> None:
    assert authenticator.authenticate(peer(ca, REFUND_AGENT)) == Identity(
        method="mtls",
        principal_id="refund-agent",
        tenant_id="acme",
        delegation_chain=("refund-agent",),
        roles=("payments", "ops"),
        claims={"spiffe_id": REFUND_AGENT},
    )


def test_unlisted_id_has_no_roles(authenticator: MtlsAuthenticator, ca: Issued) -> None:
    identity = authenticator.authenticate(
        peer(ca, "spiffe://example.org/tenant/globex/principal/bot")
    )
    assert (identity.tenant_id, identity.principal_id, identity.roles) == ("globex", "bot", ())


def test_dns_sans_do_not_count(authenticator: MtlsAuthenticator, ca: Issued) -> None:
    cert = issue_cert(ca, uris=[REFUND_AGENT], dns_names=["agent.internal"])
    identity = authenticator.authenticate(Credentials(peer_certificate_pem=cert.cert_pem))
    assert identity.principal_id == "refund-agent"


@pytest.mark.parametrize(
    ("uris", "message"),
    [
        ((), "exactly one URI SAN"),
        ((REFUND_AGENT, "spiffe://example.org/tenant/acme/principal/other"), "exactly one URI"),
        (("https://example.org/tenant/acme/principal/bot",), "not a spiffe:// URI"),
        (("spiffe://evil.example/tenant/acme/principal/bot",), "another trust domain"),
        (("spiffe://example.org.evil/tenant/acme/principal/bot",), "another trust domain"),
        (("spiffe://example.org/tenant/acme/agent/bot",), "does not match id_pattern"),
        (("spiffe://example.org/tenant/acme/principal/bot/extra",), "does not match id_pattern"),
        (("spiffe://example.org/tenant/acme/principal/../bot",), "'.' or '..'"),
        (("spiffe://example.org:8443/tenant/acme/principal/bot",), "trust domain"),
        (("spiffe://example.org/tenant/acme/principal/bot?x=1",), "path segment"),
    ],
)
def test_rejected_certificates(
    authenticator: MtlsAuthenticator, ca: Issued, uris: tuple[str, ...], message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        authenticator.authenticate(peer(ca, *uris))


def test_no_certificate(authenticator: MtlsAuthenticator) -> None:
    with pytest.raises(Unauthenticated, match="client certificate is required"):
        authenticator.authenticate(Credentials(bearer_token="x", peer="ipv4:127.0.0.1:1"))


def test_unreadable_certificate(authenticator: MtlsAuthenticator) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    with pytest.raises(Unauthenticated, match="cannot be read"):
        authenticator.authenticate(Credentials(peer_certificate_pem=pem))


def test_empty_principal_group(ca: Issued) -> None:
    auth = MtlsAuthenticator(
        trust_domain=TRUST_DOMAIN,
        id_pattern=r"/tenant/(?P<tenant_id>[^/]+)(?P<principal_id>)/x",
        roles={},
    )
    with pytest.raises(Unauthenticated, match="names no principal"):
        auth.authenticate(peer(ca, "spiffe://example.org/tenant/acme/x"))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("spiffe://example.org/a", SpiffeId("example.org", "/a")),
        ("spiffe://my_td-1.example/a/B.c/d-e_f", SpiffeId("my_td-1.example", "/a/B.c/d-e_f")),
        ("spiffe://example.org/..a/a..", SpiffeId("example.org", "/..a/a..")),
    ],
)
def test_parse_valid_spiffe_ids(uri: str, expected: SpiffeId) -> None:
    assert parse_spiffe_id(uri) == expected
    assert str(expected) == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("spiffe://example.org", "path is empty"),
        ("spiffe://example.org/", "path segment"),
        ("spiffe://example.org/a/", "path segment"),
        ("spiffe://example.org//a", "path segment"),
        ("spiffe://example.org/./a", "'.' or '..'"),
        ("spiffe://example.org/a/..", "'.' or '..'"),
        ("spiffe://example.org/a%20b", "path segment"),
        ("spiffe://example.org/a#frag", "path segment"),
        ("spiffe://Example.org/a", "trust domain"),
        ("spiffe://user@example.org/a", "trust domain"),
        ("spiffe:///a", "trust domain"),
        ("SPIFFE://example.org/a", "not a spiffe:// URI"),
        ("spiffe:example.org/a", "not a spiffe:// URI"),
        ("spiffe://example.org/" + "a" * 2048, "longer than 2048 bytes"),
    ],
)
def test_parse_invalid_spiffe_ids(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spiffe_id(uri)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trust_domain": "Example.org"}, "identity.spiffe.trust_domain"),
        ({"trust_domain": ""}, "identity.spiffe.trust_domain"),
        ({"id_pattern": "(unclosed"}, "identity.spiffe.id_pattern"),
        ({"id_pattern": r"/(?P<principal_id>.+)"}, "needs named groups tenant_id"),
        ({"roles": {"spiffe://other.org/tenant/a/principal/b": ["x"]}}, "another trust domain"),
        ({"roles": {"refund-agent": ["x"]}}, "identity.spiffe.roles"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {
        "trust_domain": TRUST_DOMAIN,
        "id_pattern": DEFAULT_PATTERN,
        "roles": {},
    }
    with pytest.raises(ConfigError, match=message):
        MtlsAuthenticator(**{**settings, **kwargs})
