"""Signed checkpoints of the audit log: sign, verify, and keep them in a file outside the database.

A checkpoint is a signed tree head in the manner of RFC 9162: it says "this database's log held
``size`` entries whose Merkle root was ``root_hash``", signed at ``signed_at`` with an Ed25519 key
that never enters the database. Sites append checkpoints to a JSON Lines file kept where database
administrators cannot rewrite it, so a log rewritten after a checkpoint no longer matches a
signature they cannot forge. This module does only that: the signed bytes, the keys, the signature
and the file; building the tree and comparing it with the log belong elsewhere. Verifying needs only
the public key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from nim_workflow._errors import InvalidInput

#: The first line of every signed message. Bump it whenever :func:`signed_message` changes.
FORMAT_LINE = "nim-workflow checkpoint v1"
#: The keys of one line of a checkpoints file, in the (sorted) order they are written.
FILE_KEYS: tuple[str, ...] = ("key_id", "log_id", "root_hash", "signature", "signed_at", "size")

_T = TypeVar("_T")
_R = TypeVar("_R")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
# A key file is a few hundred bytes; reading more would only load something that is not a key.
_KEY_FILE_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One signed tree head of one database's audit log.

    ``size`` is the number of log entries the checkpoint covers (the first ``size`` events);
    ``root_hash`` the Merkle tree root over them, 64 lowercase hex digits; ``signed_at`` the aware
    UTC instant it was signed. ``signature`` is the 64-byte Ed25519 signature over
    :func:`signed_message`, in standard base64. ``log_id`` names the one database's log the
    checkpoint is about, so a checkpoint cannot be replayed against another site's log; ``key_id``
    names the public key that verifies it (16 lowercase hex digits: the first 8 bytes of the
    SHA-256 of the raw 32-byte public key), so a site that rotates keys knows which one to use.
    """

    size: int
    root_hash: str
    signed_at: dt.datetime
    signature: str
    log_id: str
    key_id: str


# -- the signed bytes -------------------------------------------------------------------------


def signed_message(*, log_id: str, size: int, root_hash: str, signed_at: dt.datetime) -> bytes:
    """The exact bytes a checkpoint's signature covers: a short text note, one field a line.

    ``signed_message(log_id="site-a", size=7, root_hash="ab" * 32, signed_at=...)`` is::

        nim-workflow checkpoint v1
        log site-a
        size 7
        root abab...ab
        signed 2026-03-06T09:30:00.000001+00:00

    each line ending in a line feed, the time in UTC with microseconds. Every checkpoint ever
    signed is checked against these bytes, so changing them in any way is a format change: bump
    :data:`FORMAT_LINE` and keep verifying the old version. Bad arguments raise ``InvalidInput``.
    """
    lines = (
        FORMAT_LINE,
        f"log {_check_log_id(log_id)}",
        f"size {_check_size(size)}",
        f"root {_check_root_hash(root_hash)}",
        f"signed {_format_time(_check_signed_at(signed_at))}",
    )
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _check_log_id(log_id: object) -> str:
    # A newline (or any control character) in the log id would let one note read as another.
    if not isinstance(log_id, str) or not log_id or not log_id.isprintable():
        raise InvalidInput(
            "log_id must be a non-empty string of printable characters", field="log_id"
        )
    return log_id


def _check_size(size: object) -> int:
    # bool is an int to Python, but True entries is a mistake, not a size.
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(f"size must be a whole number >= 0, got {size!r}", field="size")
    return size


def _check_root_hash(root_hash: object) -> str:
    if not isinstance(root_hash, str) or not _HEX64.fullmatch(root_hash):
        raise InvalidInput("root_hash must be 64 lowercase hexadecimal digits", field="root_hash")
    return root_hash


def _check_signed_at(signed_at: object) -> dt.datetime:
    if not isinstance(signed_at, dt.datetime):
        raise InvalidInput(
            f"signed_at must be a datetime, not {type(signed_at).__name__}", field="signed_at"
        )
    if signed_at.utcoffset() is None:
        raise InvalidInput("signed_at must be timezone-aware", field="signed_at")
    try:
        return signed_at.astimezone(dt.UTC)
    except OverflowError:
        # An instant at the very edge of the calendar can fall outside it once moved to UTC.
        raise InvalidInput("signed_at is out of range in UTC", field="signed_at") from None


def _format_time(value: dt.datetime) -> str:
    # The same form the audit log's canonical encoding uses for its instants.
    return value.isoformat(timespec="microseconds")


# -- keys -------------------------------------------------------------------------------------


def load_private_key(value: Ed25519PrivateKey | str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The signing key: a key object as given, or read from an unencrypted PKCS#8 PEM file.

    Anything else (a missing file, not PEM, an encrypted key, a key that is not Ed25519) raises
    ``InvalidInput(field="signing_key")`` naming the file and what is wrong, never its content.
    """
    if isinstance(value, Ed25519PrivateKey):
        return value
    field = "signing_key"
    name, data = _read_key_file(value, field, "signing key")
    if b"PRIVATE KEY-----" not in data and b"PUBLIC KEY-----" in data:
        raise InvalidInput(
            f"signing key file {name} holds a public key; signing needs the private key",
            field=field,
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError for an encrypted key read without a password.
        raise InvalidInput(
            f"signing key file {name} is encrypted; give an unencrypted PKCS#8 PEM key",
            field=field,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's message is dropped: what matters is which file, and it must never echo
        # any of the file's bytes.
        raise InvalidInput(
            f"signing key file {name} is not a PEM private key (expected an unencrypted "
            "PKCS#8 Ed25519 key, '-----BEGIN PRIVATE KEY-----')",
            field=field,
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(
            f"signing key file {name} holds {_kind(key)}, not an Ed25519 key", field=field
        )
    return key


def load_public_key(
    value: Ed25519PublicKey | Ed25519PrivateKey | str | os.PathLike[str] | bytes,
) -> Ed25519PublicKey:
    """The verifying key: a key object, a SubjectPublicKeyInfo PEM file, or the raw 32 bytes.

    A private key object yields its public key. A private key *file* is refused: verifying
    machines should hold only the public key. Anything unusable raises
    ``InvalidInput(field="public_key")`` naming the file and what is wrong, never its content.
    """
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, Ed25519PrivateKey):
        return value.public_key()
    field = "public_key"
    if isinstance(value, bytes):
        if value.lstrip().startswith(b"-----BEGIN"):
            raise InvalidInput(
                "public_key bytes look like PEM text; pass the PEM file's path, "
                "or the raw 32-byte key",
                field=field,
            )
        if len(value) != 32:
            raise InvalidInput(
                f"a raw Ed25519 public key is 32 bytes, got {len(value)}", field=field
            )
        return Ed25519PublicKey.from_public_bytes(value)
    name, data = _read_key_file(value, field, "public key")
    if b"PRIVATE KEY-----" in data:
        raise InvalidInput(
            f"public key file {name} holds a private key; verifying needs only the public "
            "key (write it with generate_key_pair, and keep the private key off this machine)",
            field=field,
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput(
            f"public key file {name} is not a PEM public key (expected an Ed25519 "
            "SubjectPublicKeyInfo key, '-----BEGIN PUBLIC KEY-----')",
            field=field,
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(
            f"public key file {name} holds {_kind(key)}, not an Ed25519 key", field=field
        )
    return key


def _read_key_file(value: object, field: str, what: str) -> tuple[str, bytes]:
    """The key file's name for messages, and its bytes; ``InvalidInput`` if it cannot be read."""
    if not isinstance(value, str | os.PathLike):
        raise InvalidInput(
            f"{field} must be an Ed25519 key or the path of a PEM file, not {type(value).__name__}",
            field=field,
        )
    path = os.fspath(value)
    if isinstance(path, bytes):
        raise InvalidInput(f"{field} path must be text, not bytes", field=field)
    if "-----BEGIN" in path or "\n" in path:
        # Someone passed the key itself where its path belongs: saying so must not repeat it.
        raise InvalidInput(
            f"{field} looks like PEM text, not a file path; pass the path of the key file",
            field=field,
        )
    if not path:
        raise InvalidInput(f"{field} is an empty path", field=field)
    name = path
    try:
        with open(path, "rb") as file:
            data = file.read(_KEY_FILE_LIMIT + 1)
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {name} does not exist", field=field) from None
    except OSError as error:
        raise InvalidInput(
            f"cannot read {what} file {name}: {error.strerror or type(error).__name__}",
            field=field,
        ) from None
    if len(data) > _KEY_FILE_LIMIT:
        raise InvalidInput(f"{what} file {name} is too large to be a key file", field=field)
    return name, data


def _kind(key: object) -> str:
    kinds: tuple[tuple[tuple[type, ...], str], ...] = (
        ((rsa.RSAPrivateKey, rsa.RSAPublicKey), "an RSA key"),
        ((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "an elliptic-curve (EC) key"),
        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "a DSA key"),
        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "an Ed448 key"),
        ((x25519.X25519PrivateKey, x25519.X25519PublicKey), "an X25519 key"),
        ((x448.X448PrivateKey, x448.X448PublicKey), "an X448 key"),
    )
    for types, kind in kinds:
        if isinstance(key, types):
            return kind
    return f"a {type(key).__name__}"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The public key's short name: the first 8 bytes of SHA-256 of its raw 32 bytes, in hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def generate_key_pair(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str]
) -> str:
    """Make a new Ed25519 key pair, write both PEM files, and return the key's :func:`key_id`.

    The private key is PKCS#8, unencrypted, created readable by its owner only (mode 0o600); the
    public key is SubjectPublicKeyInfo. An existing file at either path is never overwritten:
    ``InvalidInput`` names it, and nothing is written.
    """
    private_name = os.fspath(private_path)
    public_name = os.fspath(public_path)
    if os.path.abspath(private_name) == os.path.abspath(public_name):
        raise InvalidInput(
            f"private and public key paths are the same file {private_name}",
            field="public_path",
        )
    for name, field in ((private_name, "private_path"), (public_name, "public_path")):
        if os.path.lexists(name):
            raise InvalidInput(f"{name} already exists; not overwriting it", field=field)
        _require_parent(name, field)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # O_EXCL closes the gap between the check above and the write: a file that appeared
    # meanwhile (or a symlink planted there) is refused, not followed or overwritten.
    _write_new(private_name, private_pem, 0o600, "private_path")
    try:
        _write_new(public_name, public_pem, 0o644, "public_path")
    except BaseException:
        # Only a whole pair is useful; the private file is ours, made a moment ago.
        os.unlink(private_name)
        raise
    return key_id(key.public_key())


def _write_new(path: str, data: bytes, mode: int, field: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InvalidInput(f"{path} already exists; not overwriting it", field=field) from None
    except OSError as error:
        raise InvalidInput(f"cannot create {path}: {error.strerror}", field=field) from None
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _require_parent(path: str, field: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InvalidInput(f"directory {parent} for {path} does not exist", field=field)


def _write_all(fd: int, data: bytes) -> None:
    # os.write may write less than asked (signals, full pipes); loop until every byte is out.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- signing and verifying --------------------------------------------------------------------


def sign(
    private_key: Ed25519PrivateKey,
    *,
    log_id: str,
    size: int,
    root_hash: str,
    signed_at: dt.datetime,
) -> Checkpoint:
    """Sign a tree head: ``size`` entries of log ``log_id`` with Merkle root ``root_hash``.

    ``signed_at`` must be aware; it is stored in UTC. Bad arguments raise ``InvalidInput``.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        raise InvalidInput(
            f"private_key must be an Ed25519PrivateKey, not {type(private_key).__name__} "
            "(see load_private_key)",
            field="signing_key",
        )
    at = _check_signed_at(signed_at)
    message = signed_message(log_id=log_id, size=size, root_hash=root_hash, signed_at=at)
    return Checkpoint(
        size=size,
        root_hash=root_hash,
        signed_at=at,
        signature=base64.b64encode(private_key.sign(message)).decode("ascii"),
        log_id=log_id,
        key_id=key_id(private_key.public_key()),
    )


def signature_valid(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether ``public_key`` signed exactly this checkpoint; ``False`` for anything else.

    Also ``False`` when the checkpoint names another key in ``key_id``, or any field is malformed
    (bad base64, a signature that is not 64 bytes, a naive time). It never raises.
    """
    try:
        if checkpoint.key_id != key_id(public_key):
            return False
        signature = base64.b64decode(checkpoint.signature, validate=True)
        if len(signature) != 64:
            return False
        message = signed_message(
            log_id=checkpoint.log_id,
            size=checkpoint.size,
            root_hash=checkpoint.root_hash,
            signed_at=checkpoint.signed_at,
        )
        public_key.verify(signature, message)
    except Exception:
        # InvalidSignature, bad base64 (binascii.Error), a malformed field (InvalidInput), or
        # something stranger in a hand-built checkpoint: a verdict is all this promises, and a
        # verifier reporting on a tampered file must not stop on a traceback.
        return False
    return True


# -- the checkpoints file ---------------------------------------------------------------------


def to_line(checkpoint: Checkpoint) -> str:
    """One line of the checkpoints file: compact JSON with sorted keys, ending in a newline.

    A checkpoint whose fields :func:`read_file` would reject raises ``InvalidInput`` instead of
    being written.
    """
    if not isinstance(checkpoint.signature, str) or not checkpoint.signature:
        raise InvalidInput("signature must be a non-empty base64 string", field="signature")
    if not isinstance(checkpoint.key_id, str) or not _HEX16.fullmatch(checkpoint.key_id):
        raise InvalidInput("key_id must be 16 lowercase hexadecimal digits", field="key_id")
    record = {
        "key_id": checkpoint.key_id,
        "log_id": _check_log_id(checkpoint.log_id),
        "root_hash": _check_root_hash(checkpoint.root_hash),
        "signature": checkpoint.signature,
        "signed_at": _format_time(_check_signed_at(checkpoint.signed_at)),
        "size": _check_size(checkpoint.size),
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


def append_to_file(path: str | os.PathLike[str], checkpoint: Checkpoint) -> None:
    """Append one checkpoint to the file, creating it if missing, and force it to disk.

    The line is written with one ``write`` and ``fsync``-ed before returning. A file whose last
    line has no newline (a write cut short) is refused with ``InvalidInput``: appending would
    glue the new checkpoint onto the broken line and lose both. Repair the file first.
    """
    line = to_line(checkpoint).encode("ascii")
    name = os.fspath(path)
    field = "checkpoints"
    _require_parent(name, field)
    created = True
    flags = os.O_RDWR | os.O_APPEND
    try:
        fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        created = False
        try:
            fd = os.open(name, flags)
        except OSError as error:
            raise InvalidInput(
                f"cannot open checkpoints file {name}: {error.strerror}", field=field
            ) from None
    except OSError as error:
        raise InvalidInput(
            f"cannot create checkpoints file {name}: {error.strerror}", field=field
        ) from None
    try:
        end = os.fstat(fd).st_size
        if end and os.pread(fd, 1, end - 1) != b"\n":
            raise InvalidInput(
                f"checkpoints file {name} does not end with a newline: its last line was "
                "cut short (an interrupted write?); repair or move the file before appending",
                field=field,
            )
        _write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        # The new file's directory entry must survive a crash too, or the file itself may not.
        _fsync_directory(os.path.dirname(os.path.abspath(name)))


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - nor fsync one
        pass
    finally:
        os.close(fd)


def read_file(path: str | os.PathLike[str]) -> tuple[list[Checkpoint], list[str]]:
    """Every checkpoint in the file, and a list of what is wrong with the lines that are not.

    A bad line (not JSON, a missing or unexpected field, a wrong type, a malformed value) does not
    raise: it is reported as ``"checkpoints file <path> line <N>: <what>"`` and the good lines
    are still returned; the last line without a newline is reported as ``truncated``. Blank
    lines are skipped. An empty file gives no checkpoints and one problem. Signatures are not
    checked here (see :func:`signature_valid`). A file that cannot be read raises
    ``InvalidInput(field="checkpoints")``.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise InvalidInput(f"checkpoints file {name} does not exist", field="checkpoints") from None
    except OSError as error:
        raise InvalidInput(
            f"cannot read checkpoints file {name}: {error.strerror or type(error).__name__}",
            field="checkpoints",
        ) from None
    checkpoints: list[Checkpoint] = []
    problems: list[str] = []
    lines = data.split(b"\n")
    # After a final newline, split leaves an empty piece that is not a line; without one, the
    # last piece is a line whose write may have been cut short.
    complete = lines[-1] == b""
    if complete:
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        truncated = not complete and number == len(lines)
        try:
            checkpoints.append(_parse_line(raw))
        except _BadLine as bad:
            what = f"truncated ({bad})" if truncated else str(bad)
            problems.append(f"checkpoints file {name} line {number}: {what}")
    if not checkpoints and not problems:
        problems.append(f"checkpoints file {name}: holds no checkpoints")
    return checkpoints, problems


class _BadLine(Exception):
    """What is wrong with one line of a checkpoints file."""


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, whatever Python's json module accepts by default.
    raise _BadLine(f"not valid JSON: {name} is not a JSON value")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently; a reader must not pick one for us.
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _BadLine(f"field {key!r} appears twice")
        record[key] = value
    return record


def _parse_line(raw: bytes) -> Checkpoint:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadLine("not valid UTF-8") from None
    try:
        record = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        # ValueError covers malformed JSON and integers too long to convert; deep nesting
        # exhausts the parser's recursion. Neither message carries more than a position.
        detail = error.msg if isinstance(error, json.JSONDecodeError) else type(error).__name__
        raise _BadLine(f"not valid JSON ({detail})") from None
    if not isinstance(record, dict):
        raise _BadLine(f"not a JSON object but {_json_type(record)}")
    missing = [key for key in FILE_KEYS if key not in record]
    if missing:
        raise _BadLine(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    unexpected = sorted(key for key in record if key not in FILE_KEYS)
    if unexpected:
        raise _BadLine(
            f"unexpected field{'s' if len(unexpected) > 1 else ''} "
            f"{', '.join(repr(key) for key in unexpected)}"
        )
    return Checkpoint(
        size=_field(record, "size", int, _size),
        root_hash=_field(record, "root_hash", str, _hex(_HEX64, "64 lowercase hex digits")),
        signed_at=_field(record, "signed_at", str, _time),
        signature=_field(record, "signature", str, _nonempty),
        log_id=_field(record, "log_id", str, _log_id),
        key_id=_field(record, "key_id", str, _hex(_HEX16, "16 lowercase hex digits")),
    )


def _field(record: dict[str, Any], key: str, kind: type[_T], check: Callable[[_T], _R]) -> _R:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if kind is int else "a string"
        raise _BadLine(f"{key} must be {expected}, not {_json_type(value)}")
    try:
        return check(value)
    except ValueError as error:
        raise _BadLine(f"{key} {error}") from None


def _size(value: int) -> int:
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def _hex(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return check


def _time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("is not an ISO-8601 date and time") from None
    if parsed.utcoffset() is None:
        raise ValueError("has no UTC offset (a naive time)")
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is out of range in UTC") from None


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("is empty")
    return value


def _log_id(value: str) -> str:
    if not value or not value.isprintable():
        raise ValueError("must be a non-empty string of printable characters")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
