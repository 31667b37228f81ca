"""Unit tests for capgate.identity.insecure: metadata identity and listen_is_local."""

from __future__ import annotations

import pytest

from capgate.identity.insecure import InsecureAuthenticator, listen_is_local
from capgate.identity.model import Credentials, Identity


def test_no_metadata() -> None:
    identity = InsecureAuthenticator().authenticate(Credentials(peer="unix:/run/capgate.sock"))
    assert identity == Identity(method="insecure", principal_id="", trusts_body=True)
    assert identity.fact() == {"method": "insecure"}


def test_metadata_names_the_caller() -> None:
    credentials = Credentials(
        bearer_token="ignored",
        metadata=(
            ("x-capgate-principal-id", "refund-agent"),
            ("x-capgate-tenant-id", "acme"),
            ("x-capgate-roles", " ops, ,payments ,"),
            ("x-capgate-principal-id", "second-value-ignored"),
        ),
    )
    assert InsecureAuthenticator().authenticate(credentials) == Identity(
        method="insecure",
        principal_id="refund-agent",
        tenant_id="acme",
        roles=("ops", "payments"),
        trusts_body=True,
    )


@pytest.mark.parametrize(
    ("listen", "local"),
    [
        ("unix:/run/capgate.sock", True),
        ("unix:relative.sock", True),
        ("127.0.0.1:50051", True),
        ("127.8.9.10:0", True),
        ("[::1]:50051", True),
        ("localhost:50051", True),
        ("LOCALHOST:50051", True),
        ("[::ffff:127.0.0.1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        ("[::ffff:10.0.0.5]:50051", False),
        ("capgate.internal:50051", False),
        ("localhost.evil.example:50051", False),
        ("127.0.0.1", False),
        ("", False),
    ],
)
def test_listen_is_local(listen: str, local: bool) -> None:
    assert listen_is_local(listen) is local
