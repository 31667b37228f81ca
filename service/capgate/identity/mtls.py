"""mTLS identities: the client certificate's SPIFFE ID names the caller.

The TLS stack has already verified the chain against ``server.tls.client_ca_file``;
here the leaf must carry exactly one URI SAN (RFC 5280 §4.2.1.6), a SPIFFE ID
(https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md) in the configured
trust domain, whose path ``id_pattern`` matches::

    spiffe://example.org/tenant/acme/principal/refund-agent
      → Identity(method="mtls", tenant_id="acme", principal_id="refund-agent", ...)

Errors: ``Unauthenticated`` for any certificate that does not name a caller so;
``ConfigError`` from the constructor for an unusable trust domain, pattern or roles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from capgate.errors import ConfigError, Unauthenticated
from capgate.identity.model import Credentials, Identity

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SPIFFE_ID = re.compile(r"spiffe://(?P<trust_domain>[^/]*)(?P<path>.*)", re.DOTALL)
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_MAX_ID_BYTES = 2048


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """``spiffe://<trust_domain><path>``; ``path`` starts with ``/``."""

    trust_domain: str
    path: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}{self.path}"


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Parse a SPIFFE ID (SPIFFE-ID.md §2). Pure.

    The scheme is ``spiffe``; the trust domain is lowercase letters, digits, ``.``,
    ``-`` and ``_`` (so no port or userinfo); the path is one or more ``/segment``
    of letters, digits, ``.``, ``-``, ``_``, none of them ``.`` or ``..``; no query,
    fragment, percent-encoding or trailing ``/``; at most 2048 bytes.

    Raises:
        ValueError: saying which rule ``uri`` breaks (without repeating it).
    """
    if len(uri.encode()) > _MAX_ID_BYTES:
        raise ValueError(f"longer than {_MAX_ID_BYTES} bytes")
    match = _SPIFFE_ID.fullmatch(uri)
    if match is None:
        raise ValueError("not a spiffe:// URI")
    trust_domain, path = match["trust_domain"], match["path"]
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise ValueError("trust domain is not lowercase letters, digits, '.', '-', '_'")
    if not path:
        raise ValueError("path is empty")
    for segment in path[1:].split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise ValueError("path segment is empty or has characters other than A-Za-z0-9._-")
        if segment in (".", ".."):
            raise ValueError("path segment is '.' or '..'")
    return SpiffeId(trust_domain, path)


class MtlsAuthenticator:
    """Names the caller by its certificate's SPIFFE ID.

    ``trust_domain``: e.g. ``"example.org"``. ``id_pattern``: a regex with named
    groups ``tenant_id`` and ``principal_id``, full-matched against the ID's path.
    ``roles``: full SPIFFE ID → its roles (absent IDs have none).

    Raises:
        ConfigError: the trust domain is not a valid one, ``id_pattern`` does not
            compile or lacks a group, or a ``roles`` key is not a SPIFFE ID in the
            trust domain.
    """

    def __init__(
        self, *, trust_domain: str, id_pattern: str, roles: Mapping[str, Sequence[str]]
    ) -> None:
        if not _TRUST_DOMAIN.fullmatch(trust_domain):
            raise ConfigError(
                "identity.spiffe.trust_domain: lowercase letters, digits, '.', '-', '_' only"
            )
        try:
            self._pattern = re.compile(id_pattern)
        except re.error as exc:
            raise ConfigError(f"identity.spiffe.id_pattern: {exc}") from exc
        missing = {"tenant_id", "principal_id"} - self._pattern.groupindex.keys()
        if missing:
            raise ConfigError(
                f"identity.spiffe.id_pattern: needs named groups {', '.join(sorted(missing))}"
            )
        for spiffe_id in roles:
            try:
                parsed = parse_spiffe_id(spiffe_id)
            except ValueError as exc:
                raise ConfigError(f"identity.spiffe.roles: {spiffe_id!r}: {exc}") from exc
            if parsed.trust_domain != trust_domain:
                raise ConfigError(f"identity.spiffe.roles: {spiffe_id!r}: another trust domain")
        self._trust_domain = trust_domain
        self._roles = {spiffe_id: tuple(names) for spiffe_id, names in roles.items()}

    def authenticate(self, credentials: Credentials) -> Identity:
        """The identity in ``credentials.peer_certificate_pem`` (a PEM leaf).

        Raises:
            Unauthenticated: no certificate, an unreadable one, zero or several URI
                SANs, a URI that is not a SPIFFE ID, another trust domain, a path
                ``id_pattern`` does not match, or an empty principal.
        """
        if not credentials.peer_certificate_pem:
            raise Unauthenticated("a client certificate is required")
        uris = _uri_sans(credentials.peer_certificate_pem)
        if len(uris) != 1:
            raise Unauthenticated("the client certificate must carry exactly one URI SAN")
        try:
            spiffe_id = parse_spiffe_id(uris[0])
        except ValueError as exc:
            raise Unauthenticated(f"the client certificate's URI SAN: {exc}") from exc
        if spiffe_id.trust_domain != self._trust_domain:
            raise Unauthenticated("the client certificate's SPIFFE ID is in another trust domain")
        match = self._pattern.fullmatch(spiffe_id.path)
        if match is None:
            raise Unauthenticated("the client certificate's SPIFFE ID does not match id_pattern")
        principal_id = match["principal_id"] or ""
        if not principal_id:
            raise Unauthenticated("the client certificate's SPIFFE ID names no principal")
        return Identity(
            method="mtls",
            principal_id=principal_id,
            tenant_id=match["tenant_id"] or "",
            delegation_chain=(principal_id,),
            roles=self._roles.get(str(spiffe_id), ()),
            claims={"spiffe_id": str(spiffe_id)},
        )


def _uri_sans(pem: str) -> list[str]:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise Unauthenticated("the client certificate cannot be read") from exc
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)
