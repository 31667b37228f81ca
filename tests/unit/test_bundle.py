"""Unit tests for capgate.policy.bundle: reading directory and tarball bundles."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from capgate.errors import BundleError
from capgate.policy.bundle import load_bundle

POLICY = 'package capgate.authz\n\ndecision := {"effect": "allow"}\n'

# The reference bundle: every kind of file the reader looks at, and some it ignores.
FILES: dict[str, str] = {
    ".manifest": json.dumps({"revision": "rev-42", "roots": ["capgate", "limits"]}),
    "data.json": json.dumps({"limits": {"max": 3}, "flag": True}),
    "a/b/data.yaml": "tiers:\n  - gold\n  - silver\n",
    "c/data.yml": "x: 1\n",
    "policy.rego": POLICY,
    "lib/util.rego": "package capgate.util\n\nf(x) := x + 1\n",
    "policy_test.rego": "package capgate.authz_test\n\ntest_x if { true }\n",
    "lib/util_test.rego": "package capgate.util_test\n",
    "README.md": "# not part of the bundle\n",
    "notes.txt": "ignored",
    "a/b/extra.json": "{not even json",
    "policy.rego.bak": "package broken {",
}

EXPECTED_DATA = {
    "limits": {"max": 3},
    "flag": True,
    "a": {"b": {"tiers": ["gold", "silver"]}},
    "c": {"x": 1},
}
EXPECTED_MODULES = {
    "policy.rego": POLICY,
    "lib/util.rego": FILES["lib/util.rego"],
}


def write_dir(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root


def write_tar(
    path: Path,
    files: dict[str, str],
    *,
    prefix: str = "",
    extra: list[tarfile.TarInfo] | None = None,
) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            content = text.encode("utf-8")
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in extra or []:
            tar.addfile(info)
    return path


def test_directory_bundle(tmp_path: Path) -> None:
    bundle = load_bundle(write_dir(tmp_path / "b", FILES))
    assert bundle.source == str(tmp_path / "b")
    assert bundle.revision == "rev-42"
    assert bundle.roots == ("capgate", "limits")
    assert bundle.data == EXPECTED_DATA
    assert bundle.modules == EXPECTED_MODULES


@pytest.mark.parametrize(("name", "prefix"), [("b.tar.gz", ""), ("b.tgz", "./")])
def test_tarball_loads_like_the_directory(tmp_path: Path, name: str, prefix: str) -> None:
    from_dir = load_bundle(write_dir(tmp_path / "b", FILES))
    from_tar = load_bundle(write_tar(tmp_path / name, FILES, prefix=prefix))
    assert from_tar.source == str(tmp_path / name)
    assert (from_tar.revision, from_tar.roots, from_tar.data, from_tar.modules) == (
        from_dir.revision,
        from_dir.roots,
        from_dir.data,
        from_dir.modules,
    )


def test_tarball_with_directory_members(tmp_path: Path) -> None:
    src = write_dir(tmp_path / "src", FILES)
    path = tmp_path / "b.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname=".")
    bundle = load_bundle(path)
    assert bundle.data == EXPECTED_DATA
    assert bundle.modules == EXPECTED_MODULES


def test_without_manifest_defaults(tmp_path: Path) -> None:
    bundle = load_bundle(write_dir(tmp_path / "b", {"p.rego": POLICY}))
    assert bundle.revision == ""
    assert bundle.roots == ("",)
    assert bundle.data == {}
    assert bundle.modules == {"p.rego": POLICY}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"data.json": '{"a": {"x": 1}}', "a/data.json": '{"y": 2}'},
            {"a": {"x": 1, "y": 2}},
        ),
        ({"data.json": '{"k": 1}', "data.yaml": "j: 2\n"}, {"k": 1, "j": 2}),
        ({"x/y/z/data.json": "[1, 2]"}, {"x": {"y": {"z": [1, 2]}}}),
        ({"x/data.yaml": "7\n"}, {"x": 7}),
    ],
)
def test_data_documents_merge_by_directory(
    tmp_path: Path, files: dict[str, str], expected: dict[str, object]
) -> None:
    bundle = load_bundle(write_dir(tmp_path / "b", {"p.rego": POLICY, **files}))
    assert bundle.data == expected


# --- refusals ------------------------------------------------------------------------


def test_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"not a directory or a \.tar\.gz"):
        load_bundle(tmp_path / "nope")


def test_plain_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.rego"
    path.write_text(POLICY)
    with pytest.raises(BundleError, match=r"not a directory or a \.tar\.gz"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("link", "target"),
    [("evil.rego", "/etc/hostname"), ("data.json", "/etc/hostname"), ("ignored.txt", "x")],
)
def test_symlink_in_directory_is_refused(tmp_path: Path, link: str, target: str) -> None:
    root = write_dir(tmp_path / "b", {"p.rego": POLICY})
    (root / link).symlink_to(target)
    with pytest.raises(BundleError, match=rf"{link} is a symlink"):
        load_bundle(root)


def test_symlinked_subdirectory_is_refused(tmp_path: Path) -> None:
    outside = write_dir(tmp_path / "outside", {"x.rego": POLICY})
    root = write_dir(tmp_path / "b", {"p.rego": POLICY})
    (root / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BundleError, match="symlink"):
        load_bundle(root)


def test_a_leading_slash_is_the_bundle_root_as_opa_build_writes_it(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "b.tar.gz", {"/p.rego": POLICY, "/.manifest": '{"revision": "r1"}'})
    bundle = load_bundle(path)
    assert bundle.revision == "r1"
    assert list(bundle.modules) == ["p.rego"]


@pytest.mark.parametrize(
    "name",
    ["../x.rego", "a/../../x.rego", "ok/../x.rego", "/../x.rego", "../README"],
)
def test_tar_member_escaping_the_bundle_is_refused(tmp_path: Path, name: str) -> None:
    path = write_tar(tmp_path / "b.tar.gz", {"p.rego": POLICY, name: "package x\n"})
    with pytest.raises(BundleError, match="escapes the bundle"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("link.rego", tarfile.SYMTYPE),
        ("ignored.txt", tarfile.SYMTYPE),
        ("hard.rego", tarfile.LNKTYPE),
        ("fifo.rego", tarfile.FIFOTYPE),
        ("dev", tarfile.CHRTYPE),
    ],
)
def test_tar_non_regular_member_is_refused(tmp_path: Path, name: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "p.rego" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    path = write_tar(tmp_path / "b.tar.gz", {"p.rego": POLICY}, extra=[info])
    with pytest.raises(BundleError, match="not a regular file"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("b.tar.gz", b"this is not gzip"),
        ("b.tgz", b"\x1f\x8b\x08\x00truncated"),
    ],
)
def test_unreadable_tarball_is_refused(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BundleError, match="unreadable tarball"):
        load_bundle(path)


@pytest.mark.parametrize("packer", ["dir", "tar"])
def test_size_limit(tmp_path: Path, packer: str) -> None:
    files = {"p.rego": POLICY, "data.json": json.dumps({"pad": "x" * 500})}
    size = sum(len(t.encode()) for t in files.values())
    path = (
        write_dir(tmp_path / "b", files)
        if packer == "dir"
        else write_tar(tmp_path / "b.tar.gz", files)
    )
    assert load_bundle(path, max_bytes=size).modules == {"p.rego": POLICY}
    with pytest.raises(BundleError, match=f"larger than {size - 1} bytes"):
        load_bundle(path, max_bytes=size - 1)


@pytest.mark.parametrize("packer", ["dir", "tar"])
def test_every_file_counts_toward_the_size_limit(tmp_path: Path, packer: str) -> None:
    """As OPA's size_limit_bytes: an ignored file is still read (and signed), so it counts."""
    files = {"p.rego": POLICY, "big.bin": "x" * 10_000}
    path = (
        write_dir(tmp_path / "b", files)
        if packer == "dir"
        else write_tar(tmp_path / "b.tar.gz", files)
    )
    assert load_bundle(path, max_bytes=len(POLICY) + 10_000).modules == {"p.rego": POLICY}
    with pytest.raises(BundleError, match="larger than"):
        load_bundle(path, max_bytes=len(POLICY) + 9_999)


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"data.json": '{"a": 1}', "a/data.json": '{"b": 2}'}, id="leaf-vs-dir"),
        pytest.param({"data.json": '{"a": {"b": 1}}', "a/b/data.yaml": "c: 2\n"}, id="deep"),
        pytest.param({"data.json": '{"k": 1}', "data.yaml": "k: 1\n"}, id="same-dir-same-key"),
        pytest.param({"x/data.json": "[1]", "x/data.yml": "[1]\n"}, id="non-object-twice"),
        pytest.param({"a/data.json": '{"b": 1}', "a/b/data.json": '{"c": 1}'}, id="nested"),
    ],
)
def test_colliding_data_keys_are_refused(tmp_path: Path, files: dict[str, str]) -> None:
    with pytest.raises(BundleError, match="redefines data key"):
        load_bundle(write_dir(tmp_path / "b", {"p.rego": POLICY, **files}))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"data.json": "[1, 2]"}, "at the bundle root must be an object"),
        ({"data.json": "{bad"}, "data.json does not parse"),
        ({"a/data.yaml": "k: [unclosed\n"}, "a/data.yaml does not parse"),
    ],
)
def test_malformed_data_is_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        load_bundle(write_dir(tmp_path / "b", {"p.rego": POLICY, **files}))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("{not json", "not JSON"),
        ("[]", "must be a JSON object"),
        ('"rev"', "must be a JSON object"),
        ('{"revision": 42}', "revision must be a string"),
        ('{"revision": null}', "revision must be a string"),
        ('{"roots": "capgate"}', "roots must be a list of strings"),
        ('{"roots": ["capgate", 1]}', "roots must be a list of strings"),
    ],
)
def test_malformed_manifest_is_refused(tmp_path: Path, manifest: str, message: str) -> None:
    root = write_dir(tmp_path / "b", {"p.rego": POLICY, ".manifest": manifest})
    with pytest.raises(BundleError, match=message):
        load_bundle(root)


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({}, id="empty"),
        pytest.param({"data.json": "{}", ".manifest": "{}"}, id="data-only"),
        pytest.param({"policy_test.rego": POLICY}, id="tests-only"),
        pytest.param({"policy.txt": POLICY}, id="wrong-extension"),
    ],
)
def test_bundle_without_modules_is_refused(tmp_path: Path, files: dict[str, str]) -> None:
    with pytest.raises(BundleError, match=r"no \.rego modules"):
        load_bundle(write_dir(tmp_path / "b", files))


def test_non_utf8_module_is_refused(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "b", {"p.rego": POLICY})
    (root / "latin1.rego").write_bytes(b"package x\n# caf\xe9\n")
    with pytest.raises(BundleError, match=r"latin1\.rego is not UTF-8"):
        load_bundle(root)


NETWORK_CALLS = [
    'r := http.send({"method": "get", "url": "https://example.com"})',
    'r := http . send({"method": "get"})',
    'r := http\t.\tsend({"method": "get"})',
    'r := net.lookup_ip_addr("example.com")',
    "r := net .lookup_ip_addr(input.host)",
    "r := net. lookup_ip_addr(input.host)",
    'allow if { x := "a"; http.send({"url": x}) }',
    'r := "http.send(" + x + http.send({})',
]


@pytest.mark.parametrize("call", NETWORK_CALLS)
@pytest.mark.parametrize("packer", ["dir", "tar"])
def test_network_builtins_are_refused(tmp_path: Path, call: str, packer: str) -> None:
    files = {"p.rego": POLICY, "net/m.rego": f"package m\n\n{call}\n"}
    path = (
        write_dir(tmp_path / "b", files)
        if packer == "dir"
        else write_tar(tmp_path / "b.tar.gz", files)
    )
    with pytest.raises(BundleError, match=r"net/m\.rego:3 calls (http\.send|net\.lookup_ip_addr)"):
        load_bundle(path)


HARMLESS = [
    "# r := http.send({})",
    "r := 1 # then http.send({}) in a comment",
    "#http . send(",
    'r := "http.send({})"',
    'r := "say \\"http.send(\\" here"',
    "r := `http.send({})`",
    "r := `multi\nline http.send(\nraw`",
    'r := "# not a comment" # net.lookup_ip_addr("x")',
    'r := "net.lookup_ip_addr(" # and http.send(',
    "r := my_http.send_later",
    "r := http.sender",
    "r := xnet.lookup_ip_addrs",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_builtin_names_in_comments_and_strings_are_allowed(tmp_path: Path, text: str) -> None:
    module = f"package m\n\n{text}\n"
    bundle = load_bundle(write_dir(tmp_path / "b", {"p.rego": POLICY, "m.rego": module}))
    assert bundle.modules["m.rego"] == module


def test_network_builtin_in_test_file_is_skipped(tmp_path: Path) -> None:
    files = {"p.rego": POLICY, "p_test.rego": "package t\n\nr := http.send({})\n"}
    assert load_bundle(write_dir(tmp_path / "b", files)).modules == {"p.rego": POLICY}


@pytest.mark.parametrize(
    "call",
    [
        # OPA evaluates http["send"](...) as http.send (checked with opa 1.x eval).
        'r := http["send"]({"method": "get", "url": "http://127.0.0.1:9/"})',
        # rego-cpp parses a ref split over lines as one ref (time.\n now_ns() works).
        'r := http.\n  send({"method": "get", "url": "http://127.0.0.1:9/"})',
    ],
)
def test_network_builtin_evasions_are_refused(tmp_path: Path, call: str) -> None:
    files = {"p.rego": POLICY, "m.rego": f"package m\n\n{call}\n"}
    with pytest.raises(BundleError, match="reaches the network"):
        load_bundle(write_dir(tmp_path / "b", files))


def test_nested_manifest_is_not_a_module(tmp_path: Path) -> None:
    files = {"p.rego": POLICY, "sub/.manifest": '{"revision": "inner"}'}
    bundle = load_bundle(write_dir(tmp_path / "b", files))
    assert bundle.modules == {"p.rego": POLICY}


def test_fifo_in_directory_is_refused(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "b", {"p.rego": POLICY})
    os.mkfifo(root / "pipe")
    with pytest.raises(BundleError):
        load_bundle(root)


def test_unreadable_file_in_directory_is_a_bundle_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, which reads through any permission bits; so the EACCES the
    # kernel would give an ordinary user is raised here instead.
    root = write_dir(tmp_path / "b", {"p.rego": POLICY})

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(root)


def test_empty_tenants_lookup_is_added_without_touching_the_bundle() -> None:
    from capgate.policy.embedded import with_empty_lookups

    data = {"capgate": {"capabilities": {}}, "other": 1}
    assert with_empty_lookups(data) == {"capgate": {"capabilities": {}, "tenants": {}}, "other": 1}
    assert data == {"capgate": {"capabilities": {}}, "other": 1}
    listed = {"capgate": {"tenants": {"acme": {}}}}
    assert with_empty_lookups(listed) == listed
    assert with_empty_lookups({"elsewhere": {}}) == {"elsewhere": {}}


@pytest.mark.parametrize(
    ("call", "builtin"),
    [
        ('deny if net.cidr_contains("10.0.0.0/8", input.ip)', "net.cidr_contains"),
        ("r := graphql.parse(q, s)", "graphql.parse"),
        (
            "r := crypto.x509.parse_and_verify_certificates_with_options(c, o)",
            "crypto.x509.parse_and_verify_certificates_with_options",
        ),
        ('r := strings.split_n("a,b", ",", 1)', "strings.split_n"),
        ('allow if trace("here")', "trace"),
        ("r := rego.metadata.rule()", "rego.metadata.rule"),
        ('r := net["cidr_merge"](["10.0.0.0/8"])', "net.cidr_merge"),
    ],
)
def test_builtins_the_embedded_engine_lacks_are_refused(
    tmp_path: Path, call: str, builtin: str
) -> None:
    """rego-cpp makes most of them silently undefined: a deny using one never fires."""
    path = write_dir(tmp_path / "b", {"p.rego": POLICY + call + "\n"})
    with pytest.raises(BundleError, match=f"calls {re.escape(builtin)}, a builtin the embedded"):
        load_bundle(path)


@pytest.mark.parametrize(
    "text",
    [
        'r := strings.split("a,b", ",")',  # not split_n
        "r := data.mylib.trace(1)",  # a function of another package
        "r := my_trace(1)",
        'r := "net.cidr_contains(" # in a string',
        "r := net.cidr_contains_later",  # not a call
    ],
)
def test_lookalikes_of_missing_builtins_are_not_refused(tmp_path: Path, text: str) -> None:
    bundle = load_bundle(write_dir(tmp_path / "b", {"p.rego": POLICY + text + "\n"}))
    assert "p.rego" in bundle.modules
