"""RFC 8785 (JSON Canonicalization Scheme, JCS) canonical JSON, fast for decision events.

``canonical_json(value)`` returns the bytes ``rfc8785.dumps(value)`` returns, byte for
byte (a hypothesis property test holds it to that), at a fraction of the cost: the
value is checked and normalized in one walk, then serialized by the standard library's
C JSON encoder (``sort_keys``, no whitespace, UTF-8). Values the encoder cannot render
the JCS way go to ``rfc8785.dumps`` whole (rare in events; see below).

Why the standard encoder is JCS for the values the walk lets through:

* **Strings** (RFC 8785 §3.2.2.2): with ``ensure_ascii=False`` the C encoder escapes
  exactly ``"``, ``\\`` and U+0000..U+001F, using ``\\b \\f \\n \\r \\t`` and ``\\u00xx``
  (lowercase hex) for the rest, and writes everything else (DEL, U+2028/2029, astral
  characters) as is: JCS's rule. A lone surrogate cannot be encoded to UTF-8; JCS
  rejects it too (we re-run ``rfc8785`` to raise its error).
* **Key order** (§3.2.3): JCS sorts by UTF-16 code units, Python by code points. The
  two orders agree unless a key holds a character above U+FFFF (a surrogate pair,
  D800-DFFF, sorts below E000-FFFF in UTF-16, above it in code points): such a value
  goes to ``rfc8785``.
* **Integers**: digits, as JCS writes integral Numbers. Beyond ±(2**53 - 1), JCS's
  data model (I-JSON numbers are IEEE doubles) decides: an integer whose double JCS
  writes as the same digits (2**53, 10**20: what ``json.loads`` makes of a canonical
  body holding a large integral float) is that double; any other (2**53 + 1, 2**60,
  whose double prints as ...847000) would change value and raises. rfc8785 refuses
  them all; accepting the first kind keeps ``canonical_json(json.loads(body)) ==
  body`` for every body this function writes, which ``capgate audit verify`` needs.
* **Floats** (§3.2.2.3, ECMAScript Number::toString): Python's ``repr`` (which the
  encoder uses) and ECMAScript both write the shortest digit string that reads back
  to the same double, the nearest to it when several are that short (David Gay's
  ``dtoa`` mode 0; ECMA-262 Number::toString step 5); rfc8785 itself takes its digits
  from ``repr``. Only the layout differs. With ``n`` the decimal exponent (value =
  0.d1d2...dk * 10**n), ``repr`` writes fixed notation for -4 < n <= 16 (CPython
  ``format_float_short``, type 'r'), ECMAScript for -6 < n <= 21; in both, fixed
  notation is "0." + (-n zeros) + digits when n <= 0 and the digits with a point after
  n of them when 0 < n < k, so they agree on -4 < n <= 16 for non-integral values.
  A non-integral double is below 2**52 (n <= 16), so every non-integral float with
  |x| >= 1e-4 is written alike and kept. An integral float within ±2**53 becomes an
  int (ECMAScript writes its exact digits, ``repr`` would add ".0"; -0.0 becomes 0).
  Every other finite float (|x| < 1e-4, or integral beyond 2**53, where ECMAScript pads
  the shortest digits with zeros) goes to ``rfc8785``; NaN and infinities raise.

Example::

    >>> canonical_json({"b": [1.0, 0.5, "x"], "a": None})
    b'{"a":null,"b":[1,0.5,"x"]}'

Raises ``ValueError`` (``rfc8785.CanonicalizationError``) for NaN or infinite floats,
integers beyond ±(2**53 - 1) that are not a double's JCS text, lone surrogates,
non-string keys and unsupported types.

Sources: RFC 8785 https://www.rfc-editor.org/rfc/rfc8785; ECMA-262 Number::toString.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

CanonicalizationError = rfc8785.CanonicalizationError

_MAX_SAFE_INT = 2**53 - 1
_MAX_EXACT_FLOAT = float(2**53)
# Non-integral floats at or above this are written by repr exactly as ECMAScript does.
_MIN_FIXED = 1e-4
_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,
    sort_keys=True,
    separators=(",", ":"),
)
# Returned by the walk: this value needs rfc8785.
_SLOW: Any = object()


def canonical_json(value: Any) -> bytes:
    """``value`` (dict, list, tuple, str, int, float, bool, None) as RFC 8785 canonical
    JSON, UTF-8. Never mutates ``value``.

    Raises:
        ValueError: not representable in JCS (NaN, infinity, an integer beyond
            ±(2**53 - 1) that no double prints as, a lone surrogate, a non-string key,
            an unsupported type).
    """
    normalized = _normalized(value)
    if normalized is _SLOW:
        return rfc8785.dumps(_big_ints_as_doubles(value))
    try:
        return _ENCODER.encode(normalized).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: rfc8785 raises its own error
        return rfc8785.dumps(value)


def _normalized(value: Any) -> Any:
    """``value`` with integral floats as ints (a copy only where one changed), or
    ``_SLOW`` when the standard encoder would not write it the JCS way."""
    kind = type(value)
    if kind is dict:
        try:  # all keys at once, in C: strings, none above U+FFFF
            keys = "".join(value)
        except TypeError:  # a key that is not a string: rfc8785 raises
            return _SLOW
        if not keys.isascii() and max(keys) > "\uffff":
            return _SLOW
        copy: dict[str, Any] | None = None
        for key, item in value.items():
            kind = type(item)
            if kind is str or item is None or kind is bool:
                continue
            if kind is int:
                if -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                    continue
                return _SLOW
            new = _normalized(item)
            if new is not item:
                if new is _SLOW:
                    return _SLOW
                if copy is None:
                    copy = dict(value)
                copy[key] = new
        return value if copy is None else copy
    if kind is list or kind is tuple:
        items: list[Any] | None = None
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str or item is None or kind is bool:
                continue
            if kind is int:
                if -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                    continue
                return _SLOW
            new = _normalized(item)
            if new is not item:
                if new is _SLOW:
                    return _SLOW
                if items is None:
                    items = list(value)
                items[index] = new
        return value if items is None else items
    if kind is float:
        if value.is_integer():
            return int(value) if -_MAX_EXACT_FLOAT <= value <= _MAX_EXACT_FLOAT else _SLOW
        # NaN and the infinities fail the range test: rfc8785 raises FloatDomainError.
        return value if _MIN_FIXED <= abs(value) < 1e16 else _SLOW
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else _SLOW
    # Subclasses (StrEnum, IntEnum): both encoders write their str/int content.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else _SLOW
    if isinstance(value, float):
        return _normalized(float(value))
    return _SLOW  # dict and list subclasses, other types: rfc8785 decides (or raises)


def _big_ints_as_doubles(value: Any) -> Any:
    """For rfc8785: integers beyond ±(2**53 - 1) that are a double's JCS text as that
    double; everything else as it is (rfc8785 raises for what remains wrong)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        try:
            double = float(value)
        except OverflowError:
            return value
        return double if rfc8785.dumps(double) == str(int(value)).encode() else value
    if isinstance(value, dict):
        return {key: _big_ints_as_doubles(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_doubles(item) for item in value]
    return value
