"""What verifying the caller costs per Authorize, by identity mode (issue 5).

Measures, in-process on real keys (no server): ``authenticate`` for a JWT the cache
has not seen (a full RS256 / PS256 / ES256 signature check and claim checks), for a
cached JWT (the common case: an agent reuses its token), for an mTLS client
certificate (SPIFFE ID parse), and ``bind_request`` (body vs identity).

    .venv/bin/python bench/identity.py [--iterations 2000] [--out bench/results/identity.json]

Prints one JSON document (microseconds per call, median of 5 rounds).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from capgate.clock import SystemClock  # noqa: E402
from capgate.decision.model import AuthorizeRequest, Principal  # noqa: E402
from capgate.identity.binding import bind_request  # noqa: E402
from capgate.identity.jwks import JwksSource  # noqa: E402
from capgate.identity.jwt import JwtAuthenticator  # noqa: E402
from capgate.identity.model import Credentials  # noqa: E402
from capgate.identity.mtls import MtlsAuthenticator  # noqa: E402
from tests.identity_keys import (  # noqa: E402
    ec_signing_key,
    issue_cert,
    make_ca,
    rsa_signing_key,
    token_claims,
    write_jwks,
)

ISSUER, AUDIENCE = "https://idp.bench", "capgate"


def per_call_us(call: Callable[[int], Any], iterations: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean microseconds per call."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(iterations):
            call(i)
        results.append((time.perf_counter() - started) / iterations * 1e6)
    return round(statistics.median(results), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/identity.json")
    args = parser.parse_args()
    n = args.iterations
    keys = [
        rsa_signing_key("rs", alg="RS256"),
        rsa_signing_key("ps", alg="PS256"),
        ec_signing_key("es"),
    ]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jwks = JwksSource(str(write_jwks(Path(tmp) / "jwks.json", *keys)))
        jwks.load()
        for key in keys:
            now = datetime.now(UTC)
            # distinct tokens (a jti each) so that no call hits the cache
            tokens = [
                key.mint(
                    token_claims(
                        issuer=ISSUER,
                        audience=AUDIENCE,
                        now=now,
                        sub="agent",
                        tenant_id="acme",
                        roles=["r"],
                        jti=str(i),
                    )
                )
                for i in range(n)
            ]
            fresh = JwtAuthenticator(
                jwks,
                issuer=ISSUER,
                audience=AUDIENCE,
                leeway_seconds=30,
                clock=SystemClock(),
                cache_size=0,
            )
            figures[f"jwt_{key.alg}_uncached_us"] = per_call_us(
                lambda i, a=fresh, t=tokens: a.authenticate(Credentials(bearer_token=t[i])), n
            )
        cached = JwtAuthenticator(
            jwks, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=30, clock=SystemClock()
        )
        credentials = Credentials(bearer_token=tokens[0])
        figures["jwt_cached_us"] = per_call_us(lambda i: cached.authenticate(credentials), n)
    ca = make_ca()
    leaf = issue_cert(ca, uris=["spiffe://bench.test/tenant/acme/principal/agent"])
    mtls = MtlsAuthenticator(
        trust_domain="bench.test",
        id_pattern=r"^/tenant/(?P<tenant_id>[^/]+)/principal/(?P<principal_id>[^/]+)$",
        roles={},
    )
    peer = Credentials(peer_certificate_pem=leaf.cert_pem)
    figures["mtls_us"] = per_call_us(lambda i: mtls.authenticate(peer), n)
    identity = cached.authenticate(credentials)
    request = AuthorizeRequest(tenant_id="", principal=Principal(id=""), capability="c")
    figures["bind_request_us"] = per_call_us(lambda i: bind_request(identity, request), n)
    document = {
        "benchmark": "identity_per_call",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version()},
        "iterations": n,
        **figures,
    }
    text = json.dumps(document, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
