"""Keys, tokens and certificates for identity tests: real crypto, no fakes.

JWT side (RFC 7519 tokens, RFC 7515 signatures, RFC 7517 key sets)::

    key = rsa_signing_key(kid="rsa-1")               # or ec_signing_key(), alg="PS256"
    write_jwks(tmp_path / "jwks.json", key)
    token = key.mint(token_claims(issuer=ISS, audience=AUD, now=NOW, sub="agent"))

mTLS side (X.509 with SPIFFE IDs as URI SANs)::

    ca = make_ca()
    client = issue_cert(ca, uris=["spiffe://example.org/tenant/acme/principal/bot"])
    client.cert_pem, client.key_pem, ca.cert_pem      # PEM text

:class:`JwksServer` serves a JWKS over real HTTP on a free loopback port.
RSA generation takes ~50 ms: share keys across a module with a fixture.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_UNSET: Any = object()


# --- JWT ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A private key, its ``kid`` and the JWS ``alg`` it signs with by default."""

    private_key: PrivateKey
    kid: str | None
    alg: str

    def public_jwk(self, *, alg: str | None = _UNSET, kid: str | None = _UNSET) -> dict[str, Any]:
        """The public JWK (RFC 7517 §4): ``kty``, key members, ``use: sig``, and ``kid``
        and ``alg`` (override either; ``None`` leaves it out)."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk["use"] = "sig"
        members = {
            "alg": self.alg if alg is _UNSET else alg,
            "kid": self.kid if kid is _UNSET else kid,
        }
        for name, value in members.items():
            jwk.pop(name, None)
            if value is not None:
                jwk[name] = value
        return jwk

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM."""
        return private_pem(self.private_key).encode()

    def mint(
        self,
        claims: Mapping[str, Any],
        *,
        alg: str | None = None,
        kid: str | None = _UNSET,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A compact JWS of ``claims`` signed with this key (``alg`` defaults to the
        key's; ``kid`` to the key's, ``None`` leaves it out of the header)."""
        header = dict(headers or {})
        kid = self.kid if kid is _UNSET else kid
        if kid is not None:
            header["kid"] = kid
        return jwt.encode(dict(claims), self.private_key, algorithm=alg or self.alg, headers=header)

    def mint_raw(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """A JWS whose header is exactly ``header`` (pyjwt adds and drops nothing),
        signed with the key's own ``alg`` whatever the header says."""
        signing_input = _signing_input(header, claims)
        algorithm = jwt.get_algorithm_by_name(self.alg)
        signature = algorithm.sign(signing_input.encode(), self.private_key)
        return f"{signing_input}.{_b64url(signature)}"


def rsa_signing_key(
    kid: str | None = "rsa-1", *, alg: str = "RS256", bits: int = 2048
) -> SigningKey:
    """A fresh RSA key (``alg`` RS256 or PS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SigningKey(key, kid, alg)


def ec_signing_key(kid: str | None = "ec-1") -> SigningKey:
    """A fresh EC P-256 key for ES256."""
    return SigningKey(ec.generate_private_key(ec.SECP256R1()), kid, "ES256")


def jwks_document(*keys: SigningKey | Mapping[str, Any]) -> dict[str, Any]:
    """``{"keys": [...]}`` (RFC 7517 §5) of the public JWKs; raw dicts pass through."""
    return {"keys": [k.public_jwk() if isinstance(k, SigningKey) else dict(k) for k in keys]}


def write_jwks(path: Path, *keys: SigningKey | Mapping[str, Any]) -> Path:
    """Write :func:`jwks_document` of ``keys`` as JSON to ``path``; return ``path``."""
    path.write_text(json.dumps(jwks_document(*keys)))
    return path


def token_claims(
    *,
    issuer: str,
    audience: str,
    now: datetime,
    sub: str = "agent",
    ttl_seconds: int = 300,
    **extra: Any,
) -> dict[str, Any]:
    """Registered claims of a valid token (RFC 7519 §4.1): iss, aud, sub, iat, exp
    (``now + ttl_seconds``, integer seconds); ``extra`` is merged last (a value of
    ``None`` removes the claim)."""
    issued = int(now.timestamp())
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": sub}
    claims |= {"iat": issued, "exp": issued + ttl_seconds}
    claims.update(extra)
    return {name: value for name, value in claims.items() if value is not None}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(part: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(part, separators=(",", ":")).encode())


def _signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    return f"{_segment(header)}.{_segment(claims)}"


def unsigned_token(claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
    """An unsecured JWS (``alg: none``, RFC 7519 §6): empty signature."""
    return _signing_input({"alg": "none", "typ": "JWT", **(headers or {})}, claims) + "."


def hmac_token(
    secret: bytes, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None
) -> str:
    """An HS256 JWS made by hand (pyjwt refuses PEM secrets): pass a public key's PEM as
    ``secret`` to build the algorithm-confusion attack."""
    signing_input = _signing_input({"alg": "HS256", "typ": "JWT", **(headers or {})}, claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


class JwksServer:
    """Serves one body at ``url`` (``http://127.0.0.1:<port>/jwks.json``) over real HTTP
    from a thread; :meth:`set` changes what the next request gets. Use
    :func:`serve_jwks`."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.status = 200
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"

    def set(self, body: bytes | Mapping[str, Any], status: int = 200) -> None:
        """Serve ``body`` (bytes as-is, a mapping as JSON) with ``status``."""
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.status = status


@contextmanager
def serve_jwks(body: bytes | Mapping[str, Any] = b"{}") -> Iterator[JwksServer]:
    """A running :class:`JwksServer`, shut down on exit."""
    server = JwksServer()
    server.set(body)
    thread = threading.Thread(target=server._httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._httpd.shutdown()
        server._httpd.server_close()
        thread.join()


# --- X.509 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A certificate and its EC P-256 private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return private_pem(self.key)


def private_pem(key: PrivateKey) -> str:
    """Unencrypted PKCS#8 PEM of ``key``."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "capgate test CA") -> Issued:
    """A self-signed CA, valid from an hour ago for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue_cert(
    ca: Issued,
    *,
    common_name: str = "capgate test",
    uris: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = False,
) -> Issued:
    """A leaf certificate signed by ``ca``, valid from an hour ago for a day.

    ``uris`` become URI SANs (SPIFFE IDs); ``dns_names``/``ip_addresses`` DNS and IP
    SANs. Extended key usage is clientAuth, or serverAuth with ``server=True``
    (e.g. ``issue_cert(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"],
    server=True)`` for a gRPC server on loopback).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    sans += [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)
