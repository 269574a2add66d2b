"""Signed checkpoints of the audit log: the signed bytes, keys, signatures and the file format.

Every test works on real Ed25519 keys and real files under ``tmp_path``; tampering is done the way
an administrator would, by editing the checkpoint or the file's bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nim_workflow import InvalidInput
from nim_workflow import _checkpoint as cp

ROOT = "ab" * 32
OTHER_ROOT = "cd" * 32
SIGNED_AT = dt.datetime(2026, 3, 6, 9, 30, 0, 1, tzinfo=dt.UTC)
# RFC 8032 section 7.1, test 1: a key everyone can recompute, so its key_id can be pinned.
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_KEY_ID = "21fe31dfa154a261"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    """A fresh signing key."""
    return Ed25519PrivateKey.generate()


def make(key: Ed25519PrivateKey, size: int = 7, **changes: Any) -> cp.Checkpoint:
    """Sign a checkpoint of log ``site-a`` with the test's defaults, overridden by ``changes``."""
    fields: dict[str, Any] = {
        "log_id": "site-a",
        "size": size,
        "root_hash": ROOT,
        "signed_at": SIGNED_AT,
    }
    fields.update(changes)
    return cp.sign(key, **fields)


def write_pem(path: Path, data: bytes) -> Path:
    """Write key bytes to ``path`` and return it."""
    path.write_bytes(data)
    return path


def private_pem(key: Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The key's public half as SubjectPublicKeyInfo PEM."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- the signed bytes ------------------------------------------------------------------------


def test_signed_message_is_pinned() -> None:
    """The signed bytes for a fixed input are exactly the documented note."""
    message = cp.signed_message(log_id="site-a", size=7, root_hash=ROOT, signed_at=SIGNED_AT)
    assert message == (
        b"nim-workflow checkpoint v1\n"
        b"log site-a\n"
        b"size 7\n"
        b"root " + ROOT.encode() + b"\n"
        b"signed 2026-03-06T09:30:00.000001+00:00\n"
    )


def test_signed_message_puts_the_time_in_utc_with_microseconds() -> None:
    """A time given in another offset is signed as the same instant in UTC, microseconds shown."""
    paris = dt.timezone(dt.timedelta(hours=1))
    message = cp.signed_message(
        log_id="x", size=0, root_hash=ROOT, signed_at=dt.datetime(2026, 3, 6, 10, 30, tzinfo=paris)
    )
    assert message.endswith(b"\nsigned 2026-03-06T09:30:00.000000+00:00\n")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"log_id": "site\nsize 9"}, "log_id"),
        ({"log_id": ""}, "log_id"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"root_hash": ROOT.upper()}, "root_hash"),
        ({"root_hash": ROOT[:-1]}, "root_hash"),
        ({"signed_at": SIGNED_AT.replace(tzinfo=None)}, "signed_at"),
        ({"signed_at": "2026-03-06T09:30:00+00:00"}, "signed_at"),
    ],
)
def test_signing_refuses_bad_fields(
    key: Ed25519PrivateKey, changes: dict[str, Any], field: str
) -> None:
    """A newline in the log id, a negative size, a non-hex root or a naive time is refused."""
    with pytest.raises(InvalidInput) as caught:
        make(key, **changes)
    assert caught.value.field == field


# -- signing and verifying -------------------------------------------------------------------


def test_sign_verify_round_trip(key: Ed25519PrivateKey) -> None:
    """A checkpoint verifies under its own public key and records what was signed."""
    checkpoint = make(key)
    assert cp.signature_valid(checkpoint, key.public_key())
    assert (checkpoint.size, checkpoint.root_hash, checkpoint.log_id) == (7, ROOT, "site-a")
    assert checkpoint.signed_at == SIGNED_AT
    assert checkpoint.signed_at.tzinfo is dt.UTC
    assert checkpoint.key_id == cp.key_id(key.public_key())
    assert len(base64.b64decode(checkpoint.signature, validate=True)) == 64


def test_wrong_public_key_fails(key: Ed25519PrivateKey) -> None:
    """Another key's public half does not verify the checkpoint."""
    other = Ed25519PrivateKey.generate().public_key()
    assert not cp.signature_valid(make(key), other)


def test_wrong_public_key_fails_even_with_its_key_id(key: Ed25519PrivateKey) -> None:
    """Relabelling the checkpoint with the other key's id does not make it verify."""
    other = Ed25519PrivateKey.generate().public_key()
    relabelled = dataclasses.replace(make(key), key_id=cp.key_id(other))
    assert not cp.signature_valid(relabelled, other)


@pytest.mark.parametrize(
    "changes",
    [
        {"size": 8},
        {"size": 6},
        {"root_hash": OTHER_ROOT},
        {"signed_at": SIGNED_AT + dt.timedelta(microseconds=1)},
        {"log_id": "site-b"},
        {"key_id": "0" * 16},
    ],
    ids=["size-up", "size-down", "root_hash", "signed_at", "log_id", "key_id"],
)
def test_any_edited_field_fails(key: Ed25519PrivateKey, changes: dict[str, Any]) -> None:
    """Changing any field after signing makes the signature invalid."""
    checkpoint = make(key)
    assert cp.signature_valid(checkpoint, key.public_key())
    assert not cp.signature_valid(dataclasses.replace(checkpoint, **changes), key.public_key())


def flip_first_bit(signature: str) -> str:
    """The signature with its first bit flipped, re-encoded."""
    raw = bytearray(base64.b64decode(signature))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "garble",
    [
        flip_first_bit,
        lambda s: s[:-4],
        lambda s: s + "AAAA",
        lambda s: "!" + s[1:],
        lambda s: "",
        lambda s: base64.b64encode(b"\0" * 64).decode(),
    ],
    ids=["bit-flipped", "short", "long", "not-base64", "empty", "zeros"],
)
def test_garbled_signature_fails(key: Ed25519PrivateKey, garble: Any) -> None:
    """A flipped bit, wrong length, or invalid base64 signature gives False, not an error."""
    checkpoint = make(key)
    garbled = dataclasses.replace(checkpoint, signature=garble(checkpoint.signature))
    assert garbled.signature != checkpoint.signature
    assert cp.signature_valid(garbled, key.public_key()) is False


@pytest.mark.parametrize(
    "changes",
    [
        {"signed_at": SIGNED_AT.replace(tzinfo=None)},
        {"signed_at": "yesterday"},
        {"size": "7"},
        {"signature": None},
        {"log_id": 3},
    ],
)
def test_signature_valid_never_raises(key: Ed25519PrivateKey, changes: dict[str, Any]) -> None:
    """A hand-built checkpoint with nonsense fields is simply not valid."""
    checkpoint = dataclasses.replace(make(key), **changes)
    assert cp.signature_valid(checkpoint, key.public_key()) is False


def test_sign_refuses_a_key_path() -> None:
    """sign takes a key object; a path is refused, pointing at load_private_key."""
    with pytest.raises(InvalidInput, match="load_private_key") as caught:
        cp.sign("key.pem", log_id="a", size=0, root_hash=ROOT, signed_at=SIGNED_AT)  # type: ignore[arg-type]
    assert caught.value.field == "signing_key"


# -- key ids ---------------------------------------------------------------------------------


def test_key_id_is_pinned_for_a_known_key() -> None:
    """The key id is the first 8 bytes of SHA-256 of the raw public key, for RFC 8032's key."""
    private = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert cp.key_id(private.public_key()) == RFC8032_KEY_ID
    assert cp.key_id(cp.load_public_key(RFC8032_PUBLIC)) == RFC8032_KEY_ID


def test_key_id_is_stable_and_sixteen_hex(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """The same key, however it is loaded, has one key id of 16 lowercase hex digits."""
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    from_file = cp.load_public_key(write_pem(tmp_path / "pub.pem", public_pem(key)))
    ids = {cp.key_id(public), cp.key_id(cp.load_public_key(raw)), cp.key_id(from_file)}
    assert len(ids) == 1
    (only,) = ids
    assert len(only) == 16
    assert all(c in "0123456789abcdef" for c in only)
    assert only != cp.key_id(Ed25519PrivateKey.generate().public_key())


# -- loading keys ----------------------------------------------------------------------------


def test_load_private_key_from_pem_file(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A PKCS#8 PEM file loads to the same key, as a str or a Path; a key object passes through."""
    path = write_pem(tmp_path / "signing.pem", private_pem(key))
    for value in (path, str(path)):
        loaded = cp.load_private_key(value)
        assert cp.key_id(loaded.public_key()) == cp.key_id(key.public_key())
    assert cp.load_private_key(key) is key


def test_load_private_key_missing_file(tmp_path: Path) -> None:
    """A missing key file is named in the error."""
    path = tmp_path / "nowhere.pem"
    with pytest.raises(InvalidInput, match="does not exist") as caught:
        cp.load_private_key(path)
    assert str(path) in str(caught.value)
    assert caught.value.field == "signing_key"


def test_load_private_key_garbage_does_not_echo_it(tmp_path: Path) -> None:
    """A file that is not PEM is named, and none of its content appears in the message."""
    path = write_pem(tmp_path / "junk.pem", b"SECRET-GARBAGE-\xff\x00 not a key")
    with pytest.raises(InvalidInput, match="not a PEM private key") as caught:
        cp.load_private_key(path)
    assert str(path) in str(caught.value)
    assert "SECRET" not in str(caught.value)
    assert caught.value.field == "signing_key"


def test_load_private_key_refuses_rsa(tmp_path: Path) -> None:
    """An RSA private key is named as such and refused."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = write_pem(tmp_path / "rsa.pem", private_pem(rsa_key))
    with pytest.raises(InvalidInput, match="holds an RSA key, not an Ed25519 key") as caught:
        cp.load_private_key(path)
    assert str(path) in str(caught.value)


def test_load_private_key_refuses_a_public_key_file(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A public key file where the signing key belongs says so."""
    path = write_pem(tmp_path / "pub.pem", public_pem(key))
    with pytest.raises(InvalidInput, match="holds a public key"):
        cp.load_private_key(path)


def test_load_private_key_refuses_an_encrypted_key(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """An encrypted PEM key is refused with a message saying it is encrypted."""
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(InvalidInput, match="encrypted"):
        cp.load_private_key(write_pem(tmp_path / "enc.pem", encrypted))


def test_load_private_key_refuses_pem_text_without_echoing_it(key: Ed25519PrivateKey) -> None:
    """The PEM text itself passed as a path is refused without repeating the key."""
    text = private_pem(key).decode()
    with pytest.raises(InvalidInput, match="looks like PEM text") as caught:
        cp.load_private_key(text)
    body = text.splitlines()[1]
    assert body not in str(caught.value)


def test_load_private_key_refuses_a_directory(tmp_path: Path) -> None:
    """A directory is not a key file: an error naming it, not a traceback."""
    with pytest.raises(InvalidInput, match="cannot read signing key file") as caught:
        cp.load_private_key(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_load_public_key_from_pem_file(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A SubjectPublicKeyInfo PEM file loads, and verifies the key's checkpoints."""
    public = cp.load_public_key(write_pem(tmp_path / "pub.pem", public_pem(key)))
    assert cp.signature_valid(make(key), public)


def test_load_public_key_from_private_key_object(key: Ed25519PrivateKey) -> None:
    """A private key object where a public one is expected yields its public key."""
    public = cp.load_public_key(key)
    assert isinstance(public, Ed25519PublicKey)
    assert cp.key_id(public) == cp.key_id(key.public_key())
    assert cp.signature_valid(make(key), public)


def test_load_public_key_from_raw_bytes(key: Ed25519PrivateKey) -> None:
    """The raw 32 bytes of the public key load to the same key."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert cp.signature_valid(make(key), cp.load_public_key(raw))


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33)])
def test_load_public_key_refuses_wrong_length_bytes(raw: bytes) -> None:
    """Raw bytes that are not 32 long are refused with their length."""
    with pytest.raises(InvalidInput, match=f"got {len(raw)}") as caught:
        cp.load_public_key(raw)
    assert caught.value.field == "public_key"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"SECRET-GARBAGE", "not a PEM public key"),
        ("rsa", "holds an RSA key"),
        ("private", "holds a private key"),
    ],
)
def test_load_public_key_file_errors(
    tmp_path: Path, key: Ed25519PrivateKey, content: bytes | str | None, message: str
) -> None:
    """Missing, garbage, RSA or private-key files are refused, naming the file, not its content."""
    path = tmp_path / "pub.pem"
    if content == "rsa":
        path.write_bytes(public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    elif content == "private":
        path.write_bytes(private_pem(key))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message) as caught:
        cp.load_public_key(path)
    assert str(path) in str(caught.value)
    assert caught.value.field == "public_key"
    content_lines = path.read_bytes().decode().splitlines() if path.exists() else []
    assert not any(line in str(caught.value) for line in content_lines if "BEGIN" not in line)


# -- generating keys -------------------------------------------------------------------------


def test_generate_key_pair(tmp_path: Path) -> None:
    """The pair loads back, the private file is 0o600, and the returned id names the key."""
    private_path, public_path = tmp_path / "signing.pem", tmp_path / "public.pem"
    identifier = cp.generate_key_pair(private_path, public_path)
    assert stat.S_IMODE(os.stat(private_path).st_mode) == 0o600
    private = cp.load_private_key(private_path)
    public = cp.load_public_key(public_path)
    assert cp.key_id(public) == cp.key_id(private.public_key()) == identifier
    assert cp.signature_valid(make(private), public)


@pytest.mark.parametrize("existing", ["private", "public"])
def test_generate_key_pair_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    """An existing file at either path is named, left untouched, and nothing else is written."""
    private_path, public_path = tmp_path / "signing.pem", tmp_path / "public.pem"
    taken, other = (
        (private_path, public_path) if existing == "private" else (public_path, private_path)
    )
    taken.write_bytes(b"precious")
    with pytest.raises(InvalidInput, match="already exists") as caught:
        cp.generate_key_pair(private_path, public_path)
    assert str(taken) in str(caught.value)
    assert taken.read_bytes() == b"precious"
    assert not other.exists()


def test_generate_key_pair_refuses_a_missing_directory(tmp_path: Path) -> None:
    """A private key path in a directory that does not exist is refused before anything is made."""
    with pytest.raises(InvalidInput, match="does not exist"):
        cp.generate_key_pair(tmp_path / "no" / "signing.pem", tmp_path / "public.pem")
    assert not (tmp_path / "public.pem").exists()


# -- the checkpoints file --------------------------------------------------------------------


def test_to_line_is_pinned() -> None:
    """One line is compact JSON with sorted keys and a newline, exactly."""
    checkpoint = cp.Checkpoint(
        size=7,
        root_hash=ROOT,
        signed_at=SIGNED_AT,
        signature="c2ln",
        log_id="site-a",
        key_id=RFC8032_KEY_ID,
    )
    assert cp.to_line(checkpoint) == (
        '{"key_id":"21fe31dfa154a261","log_id":"site-a","root_hash":"' + ROOT + '",'
        '"signature":"c2ln","signed_at":"2026-03-06T09:30:00.000001+00:00","size":7}\n'
    )


def test_file_round_trip(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """Several appended checkpoints read back equal, in order, and still verify."""
    path = tmp_path / "checkpoints.jsonl"
    written = [
        make(key, size=n, signed_at=SIGNED_AT + dt.timedelta(hours=n), root_hash=f"{n:064x}")
        for n in (1, 5, 9)
    ]
    for checkpoint in written:
        cp.append_to_file(path, checkpoint)
    checkpoints, problems = cp.read_file(path)
    assert problems == []
    assert checkpoints == written
    assert all(cp.signature_valid(c, key.public_key()) for c in checkpoints)
    assert path.read_text().count("\n") == 3


def test_append_creates_file_with_mode_0o644_under_usual_umask(
    key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """A new checkpoints file is created readable by all, writable by its owner."""
    path = tmp_path / "checkpoints.jsonl"
    cp.append_to_file(path, make(key))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644 & ~umask


def test_append_refuses_a_torn_last_line(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A file whose last line has no newline is refused and left as it was."""
    path = tmp_path / "checkpoints.jsonl"
    cp.append_to_file(path, make(key, size=1))
    torn = path.read_bytes() + cp.to_line(make(key, size=2)).encode()[:40]
    path.write_bytes(torn)
    with pytest.raises(InvalidInput, match="does not end with a newline") as caught:
        cp.append_to_file(path, make(key, size=3))
    assert caught.value.field == "checkpoints"
    assert path.read_bytes() == torn


def test_append_refuses_a_missing_directory(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """Appending into a directory that does not exist is refused, naming it."""
    with pytest.raises(InvalidInput, match="does not exist") as caught:
        cp.append_to_file(tmp_path / "gone" / "checkpoints.jsonl", make(key))
    assert str(tmp_path / "gone") in str(caught.value)


def test_append_refuses_a_malformed_checkpoint(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A hand-built checkpoint the reader would reject is never written."""
    path = tmp_path / "checkpoints.jsonl"
    bad = dataclasses.replace(make(key), signed_at=SIGNED_AT.replace(tzinfo=None))
    with pytest.raises(InvalidInput):
        cp.append_to_file(path, bad)
    assert not path.exists()


def test_truncated_last_line_is_reported(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A cut-short last line is reported as truncated with its number; earlier ones survive."""
    path = tmp_path / "checkpoints.jsonl"
    good = [make(key, size=1), make(key, size=2)]
    for checkpoint in good:
        cp.append_to_file(path, checkpoint)
    with path.open("ab") as file:
        file.write(cp.to_line(make(key, size=3)).encode()[:-30])
    checkpoints, problems = cp.read_file(path)
    assert checkpoints == good
    assert len(problems) == 1
    assert problems[0].startswith(f"checkpoints file {path} line 3: truncated")


def test_bad_line_in_the_middle_is_not_called_truncated(
    key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """A broken line followed by a newline is a bad line, not a truncated one."""
    path = tmp_path / "checkpoints.jsonl"
    first, last = cp.to_line(make(key, size=1)), cp.to_line(make(key, size=2))
    path.write_text(first + first[:30] + "\n" + last)
    checkpoints, problems = cp.read_file(path)
    assert [c.size for c in checkpoints] == [1, 2]
    assert len(problems) == 1
    assert problems[0].startswith(f"checkpoints file {path} line 2: not valid JSON")


def edit(record: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """The record with one key set (or removed, for ``...``)."""
    changed = dict(record)
    if value is ...:
        del changed[key]
    else:
        changed[key] = value
    return changed


@pytest.mark.parametrize(
    ("key_name", "value", "message"),
    [
        ("size", "7", "size must be an integer, not a string"),
        ("size", 7.0, "size must be an integer, not a number"),
        ("size", True, "size must be an integer, not a boolean"),
        ("size", -1, "size must be >= 0"),
        ("size", ..., "missing field size"),
        ("root_hash", "zz" * 32, "root_hash must be 64 lowercase hex digits"),
        ("root_hash", ROOT.upper(), "root_hash must be 64 lowercase hex digits"),
        ("root_hash", None, "root_hash must be a string, not null"),
        ("signed_at", "2026-03-06T09:30:00", "signed_at has no UTC offset"),
        ("signed_at", "last tuesday", "signed_at is not an ISO-8601"),
        ("signed_at", "9999-12-31T23:00:00-05:00", "signed_at is out of range"),
        ("signed_at", 1772789400, "signed_at must be a string, not a number"),
        ("key_id", "ABCDEF0123456789", "key_id must be 16 lowercase hex digits"),
        ("log_id", "", "log_id must be a non-empty string"),
        ("log_id", ["site-a"], "log_id must be a string, not an array"),
        ("signature", "", "signature is empty"),
        ("signature", ..., "missing field signature"),
        ("extra", 1, "unexpected field 'extra'"),
    ],
)
def test_edited_json_is_reported(
    key: Ed25519PrivateKey, tmp_path: Path, key_name: str, value: Any, message: str
) -> None:
    """An edited line is reported with its number and what is wrong; the others still load."""
    path = tmp_path / "checkpoints.jsonl"
    good = make(key, size=1)
    record = json.loads(cp.to_line(make(key, size=2)))
    path.write_text(cp.to_line(good) + json.dumps(edit(record, key_name, value)) + "\n")
    checkpoints, problems = cp.read_file(path)
    assert checkpoints == [good]
    assert len(problems) == 1
    assert problems[0].startswith(f"checkpoints file {path} line 2: {message}")
    assert "truncated" not in problems[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}\n", "not valid UTF-8"),
        (b"[1, 2]\n", "not a JSON object but an array"),
        (b'"text"\n', "not a JSON object but a string"),
        (b"{\n", "not valid JSON"),
        (b'{"size": NaN}\n', "not valid JSON"),
        (b"[" * 100_000 + b"\n", "not valid JSON"),
        (b'{"size": ' + b"9" * 5000 + b"}\n", "not valid JSON"),
        (b'{"size": 1, "size": 2}\n', "field 'size' appears twice"),
    ],
    ids=["utf8", "array", "string", "broken", "nan", "deep", "huge-int", "duplicate"],
)
def test_hostile_bytes_are_reported_not_raised(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """Invalid UTF-8, non-objects, deep nesting or huge numbers become problems, not tracebacks."""
    path = tmp_path / "checkpoints.jsonl"
    path.write_bytes(content)
    checkpoints, problems = cp.read_file(path)
    assert checkpoints == []
    assert len(problems) == 1
    assert problems[0].startswith(f"checkpoints file {path} line 1: {message}")


def test_blank_lines_are_ignored(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    """Blank lines between checkpoints neither count as checkpoints nor as problems."""
    path = tmp_path / "checkpoints.jsonl"
    path.write_text("\n" + cp.to_line(make(key)) + "  \n\n")
    checkpoints, problems = cp.read_file(path)
    assert len(checkpoints) == 1
    assert problems == []


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_empty_file_holds_no_checkpoints(tmp_path: Path, content: bytes) -> None:
    """An empty (or blank) file gives no checkpoints and one problem saying so."""
    path = tmp_path / "checkpoints.jsonl"
    path.write_bytes(content)
    assert cp.read_file(path) == ([], [f"checkpoints file {path}: holds no checkpoints"])


def test_missing_checkpoints_file_raises(tmp_path: Path) -> None:
    """A missing file raises InvalidInput naming it."""
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(InvalidInput, match="does not exist") as caught:
        cp.read_file(path)
    assert caught.value.field == "checkpoints"
    assert str(path) in str(caught.value)


def test_unreadable_checkpoints_file_raises(tmp_path: Path) -> None:
    """A path that cannot be read (a directory) raises InvalidInput naming it."""
    with pytest.raises(InvalidInput, match="cannot read checkpoints file") as caught:
        cp.read_file(tmp_path)
    assert caught.value.field == "checkpoints"
