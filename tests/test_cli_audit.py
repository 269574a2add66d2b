"""The ``nim-workflow audit`` commands: verify, keygen and checkpoint, on SQLite and PostgreSQL.

Every failure here must be an exit code and a line saying why, never a traceback: 3 when the log
or a checkpoint does not hold up, 2 when a file or key cannot be used.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import nim_workflow as nw
from nim_workflow import _checkpoint
from nim_workflow._cli import main

ADMIN = nw.Actor("admin-1", roles={"administrator"})
CLEAN_ENV: dict[str, str | None] = {
    "NIM_WORKFLOW_DB": None,
    "NIM_WORKFLOW_ACTOR": None,
    "NIM_WORKFLOW_SIGNING_KEY": None,
}
CHECKPOINT_LINE = re.compile(
    r"^checkpoint: size (\d+), root ([0-9a-f]{64}), key ([0-9a-f]{16}), signed (\S+)$"
)

Cli = Callable[..., Result]


def _history(url: str, reference: str = "LDN-1") -> None:
    """A roster and one case's first steps, written through the engine."""
    with nw.Engine(url) as engine:
        engine.migrate()
        engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
        engine.add_staff("sw-017", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
        engine.add_staff("tm-004", roles={"team_manager"}, sites={"london"}, actor=ADMIN)
        at = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)
        engine.open_case(
            reference,
            pathway="nim-uk-england",
            site="london",
            actor=nw.Actor("sw-017", roles={"social_worker"}),
            at=at,
            facts={"consent_recorded": True},
        )


def _invoke(url: str, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, ["--db", url, *args], env={**CLEAN_ENV, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def db(db_url: str) -> str:
    """A migrated database with a roster and one case, once per backend."""
    _history(db_url)
    return db_url


@pytest.fixture
def cli(db: str) -> Cli:
    """Invoke the command line on the test's database; fail on a traceback or a wrong exit."""

    def invoke(*args: str, code: int = 0, env: dict[str, str] | None = None) -> Result:
        return _invoke(db, *args, code=code, env=env)

    return invoke


@pytest.fixture
def keys(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    """A signing key pair made by `audit keygen`: (private, public)."""
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    cli("audit", "keygen", "--private", str(private), "--public", str(public))
    return private, public


def _fire(db: str, trigger: str, at: dt.datetime) -> None:
    with nw.Engine(db) as engine:
        engine.fire("LDN-1", trigger, actor=nw.Actor("tm-004", roles={"team_manager"}), at=at)


def _entries(db: str) -> int:
    with nw.Engine(db) as engine:
        return len(engine.audit())


# -- keygen ---------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_for_its_owner_and_a_public_key(
    cli: Cli, tmp_path: Path
) -> None:
    """`audit keygen` writes both PEM files, the private one 0600, and prints the key id."""
    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    out = cli("audit", "keygen", "--private", str(private), "--public", str(public)).stdout
    key_id = _checkpoint.key_id(_checkpoint.load_public_key(public))
    assert out == f"key {key_id}: private key {private} (mode 0600), public key {public}\n"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert _checkpoint.load_private_key(private).public_key() == _checkpoint.load_public_key(public)


def test_keygen_never_overwrites_a_file(cli: Cli, keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A second keygen onto an existing file exits 2 and leaves both files as they were."""
    private, _public = keys
    before = private.read_bytes()
    result = cli(
        "audit", "keygen", "--private", str(private), "--public", str(tmp_path / "other.pem"),
        code=2,
    )  # fmt: skip
    assert result.stderr == f"error: {private} already exists; not overwriting it\n"
    assert private.read_bytes() == before
    assert not (tmp_path / "other.pem").exists()


def test_keygen_json(cli: Cli, tmp_path: Path) -> None:
    """`audit keygen --json` gives the key id and both paths."""
    private, public = tmp_path / "j.pem", tmp_path / "j.pub.pem"
    data = json.loads(
        cli("audit", "keygen", "--private", str(private), "--public", str(public), "--json").stdout
    )
    assert data == {
        "key_id": _checkpoint.key_id(_checkpoint.load_public_key(public)),
        "private": str(private),
        "public": str(public),
    }


# -- checkpoint and verify ------------------------------------------------------------------------


def test_keygen_checkpoint_verify_round_trip(
    cli: Cli, db: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Checkpoints signed as the log grows verify deep against the public key: exit 0."""
    private, public = keys
    ledger = tmp_path / "nimwf.checkpoints"
    first = cli("audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))
    line, appended = first.stdout.splitlines()
    match = CHECKPOINT_LINE.match(line)
    assert match is not None, line
    assert int(match.group(1)) == _entries(db)
    assert match.group(3) == _checkpoint.key_id(_checkpoint.load_public_key(public))
    assert appended == f"appended to {ledger}"
    _fire(db, "accept_referral", dt.datetime(2026, 1, 8, 12, tzinfo=dt.UTC))
    cli("audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))
    assert len(ledger.read_text().splitlines()) == 2
    result = cli(
        "audit", "verify", "--deep", "--checkpoints", str(ledger), "--public-key", str(public)
    )
    entries = _entries(db)
    assert result.stdout == (
        f"audit log ok: {entries} entries checked, {entries} sequenced, 2 checkpoints checked, "
        "deep\n"
    )
    assert result.stderr == ""


def test_checkpoint_and_verify_take_the_key_from_the_environment(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """NIM_WORKFLOW_SIGNING_KEY signs, and verifies checkpoints when no --public-key is given."""
    private, _public = keys
    ledger = tmp_path / "env.checkpoints"
    env = {"NIM_WORKFLOW_SIGNING_KEY": str(private)}
    cli("audit", "checkpoint", "--out", str(ledger), env=env)
    result = cli("audit", "verify", "--checkpoints", str(ledger), env=env)
    assert result.stdout.startswith("audit log ok: ")
    assert ", 1 checkpoint checked, not deep\n" in result.stdout


def test_checkpoint_json(cli: Cli, db: str, keys: tuple[Path, Path], tmp_path: Path) -> None:
    """`audit checkpoint --json` gives the whole signed checkpoint and the file."""
    private, _public = keys
    ledger = tmp_path / "json.checkpoints"
    args = ("audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))
    data = json.loads(cli(*args, "--json").stdout)
    assert set(data) == {"size", "root_hash", "signed_at", "signature", "log_id", "key_id", "file"}
    assert data["size"] == _entries(db)
    assert data["file"] == str(ledger)
    assert dt.datetime.fromisoformat(data["signed_at"]).tzinfo is not None
    (stored,), problems = _checkpoint.read_file(ledger)
    assert problems == []
    assert (stored.root_hash, stored.signature) == (data["root_hash"], data["signature"])


def test_checkpoint_without_a_signing_key_exits_2(cli: Cli, tmp_path: Path) -> None:
    """No --signing-key and no NIM_WORKFLOW_SIGNING_KEY: exit 2 saying how, nothing written."""
    ledger = tmp_path / "none.checkpoints"
    result = cli("audit", "checkpoint", "--out", str(ledger), code=2)
    assert result.stderr.startswith("error: no signing key: pass --signing-key PEM or set ")
    assert "nim-workflow audit keygen" in result.stderr
    assert not ledger.exists()


def test_checkpoint_with_an_unusable_key_exits_2(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A key file that is missing, or holds a public key, exits 2 naming the file."""
    _private, public = keys
    missing = cli("audit", "checkpoint", "--signing-key", str(tmp_path / "nope.pem"), code=2)
    assert missing.stderr == f"error: signing key file {tmp_path / 'nope.pem'} does not exist\n"
    wrong = cli("audit", "checkpoint", "--signing-key", str(public), code=2)
    assert "holds a public key" in wrong.stderr


def test_verify_json_shape(cli: Cli, db: str) -> None:
    """`audit verify --json` gives ok, the counts, problems and notes."""
    data = json.loads(cli("audit", "verify", "--json", "--deep").stdout)
    entries = _entries(db)
    assert data == {
        "ok": True,
        "checked": entries,
        "sequenced": entries,
        "checkpoints": 0,
        "deep": True,
        "problems": [],
        "notes": [],
    }


def test_verify_checkpoints_needs_a_public_key(cli: Cli, keys: tuple[Path, Path]) -> None:
    """--checkpoints with neither --public-key nor a configured signing key exits 2."""
    private, _public = keys
    ledger = private.parent / "k.checkpoints"
    cli("audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))
    result = cli("audit", "verify", "--checkpoints", str(ledger), code=2)
    assert result.stderr.startswith(
        "error: checking checkpoints needs the public key they were signed with"
    )


def test_verify_a_missing_checkpoints_file_exits_2(cli: Cli, keys: tuple[Path, Path]) -> None:
    """A checkpoints file that does not exist is bad input (exit 2), not a broken log."""
    _private, public = keys
    missing = public.parent / "absent.checkpoints"
    result = cli(
        "audit", "verify", "--checkpoints", str(missing), "--public-key", str(public), code=2
    )  # fmt: skip
    assert result.stderr == f"error: checkpoints file {missing} does not exist\n"


def test_verify_an_unreadable_public_key_exits_2(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A public key file that is not a PEM public key exits 2 naming it."""
    private, _public = keys
    ledger = tmp_path / "k.checkpoints"
    cli("audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    result = cli("audit", "verify", "--checkpoints", str(ledger), "--public-key", str(junk), code=2)
    assert result.stderr.startswith(f"error: public key file {junk} is not a PEM public key")


# -- what exit 3 catches --------------------------------------------------------------------------


def _signed(cli: Cli, private: Path, ledger: Path) -> None:
    cli("audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))


def _broken(result: Result, reason: str) -> None:
    """Exit 3 with the reason on a problem line and the summary on stderr."""
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    assert problems, result.stdout
    assert any(reason in line for line in problems), problems
    assert result.stderr.startswith("error: audit log broken: ")
    assert result.stderr.count("\n") == 1


def test_verify_with_a_wrong_public_key_exits_3(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Checkpoints checked with another key pair's public key: exit 3, wrong public key."""
    private, _public = keys
    ledger = tmp_path / "k.checkpoints"
    _signed(cli, private, ledger)
    other = tmp_path / "other.pub.pem"
    cli("audit", "keygen", "--private", str(tmp_path / "other.pem"), "--public", str(other))
    result = cli(
        "audit", "verify", "--checkpoints", str(ledger), "--public-key", str(other), code=3
    )
    _broken(result, "wrong public key")


def test_verify_another_databases_checkpoints_exits_3(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A checkpoint signed for another database's log is refused: exit 3, another database."""
    private, public = keys
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    _history(elsewhere)
    ledger = tmp_path / "elsewhere.checkpoints"
    _invoke(elsewhere, "audit", "checkpoint", "--out", str(ledger), "--signing-key", str(private))
    _invoke(elsewhere, "audit", "verify", "--checkpoints", str(ledger), "--public-key", str(public))
    result = cli(
        "audit", "verify", "--checkpoints", str(ledger), "--public-key", str(public), code=3
    )
    _broken(result, "belongs to another database's log")


def test_verify_a_truncated_checkpoints_file_exits_3(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A checkpoints file whose last line was cut short: exit 3 naming the line, truncated."""
    private, public = keys
    ledger = tmp_path / "cut.checkpoints"
    _signed(cli, private, ledger)
    _signed(cli, private, ledger)
    ledger.write_bytes(ledger.read_bytes()[:-20])
    result = cli(
        "audit", "verify", "--checkpoints", str(ledger), "--public-key", str(public), code=3
    )
    _broken(result, f"checkpoints file {ledger} line 2: truncated")


def test_verify_an_edited_checkpoint_exits_3(
    cli: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A checkpoint whose root was changed after signing: exit 3, edited after it was signed."""
    private, public = keys
    ledger = tmp_path / "edited.checkpoints"
    _signed(cli, private, ledger)
    record = json.loads(ledger.read_text())
    record["root_hash"] = "0" * 64
    ledger.write_text(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    result = cli(
        "audit", "verify", "--checkpoints", str(ledger), "--public-key", str(public), code=3
    )
    _broken(result, "the checkpoint was edited after it was signed")


def test_verify_an_edited_entry_exits_3(cli: Cli, db: str) -> None:
    """Editing an audit row behind the engine's back makes `audit verify` exit 3 naming it."""
    database = sa.create_engine(db)
    try:
        with database.begin() as conn:
            conn.execute(
                sa.text("UPDATE nimwf_audit_events SET actor_id = 'someone' WHERE seq = 1")
            )
    finally:
        database.dispose()
    result = cli("audit", "verify", code=3)
    _broken(result, "seq 1 ")
    assert "the entry was edited" in result.stdout
    data = json.loads(cli("audit", "verify", "--json", code=3).stdout)
    assert data["ok"] is False
    assert any("seq 1 " in problem for problem in data["problems"])


def test_verify_an_entry_edited_after_a_checkpoint_exits_3(
    cli: Cli, db: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A log rewritten consistently after a checkpoint no longer extends it: exit 3."""
    private, public = keys
    ledger = tmp_path / "before.checkpoints"
    _signed(cli, private, ledger)
    database = sa.create_engine(db)
    try:
        with database.begin() as conn:
            last = sa.text("SELECT MAX(seq) FROM nimwf_audit_events")
            newest = conn.execute(last).scalar_one()
            conn.execute(
                sa.text("DELETE FROM nimwf_audit_events WHERE seq = :seq"), {"seq": newest}
            )
    finally:
        database.dispose()
    result = cli(
        "audit", "verify", "--checkpoints", str(ledger), "--public-key", str(public), code=3
    )
    _broken(result, "checkpoint of ")
