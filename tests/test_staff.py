"""The staff roster: who may act through the command line, with which roles, at which sites.

Only an administrator changes it, an empty roster takes its first administrator, the last one
cannot leave, and every change (and every refused one) is an audited entry in the member's chain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import Clock

import nim_workflow as nw

ADMIN = nw.Actor("admin-1", roles={"administrator"})
NOBODY = nw.Actor("sw-099", roles={"social_worker"})


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine with an empty roster."""
    eng = nw.Engine(db_url, clock=Clock())
    eng.migrate()
    yield eng
    eng.close()


def staff_log(engine: nw.Engine) -> list[tuple[str, str, str]]:
    """The roster's audit entries as (member, action, actor)."""
    return [(e.reference, e.action, e.actor_id) for e in engine.audit() if e.stream == "staff"]


def test_an_empty_roster_takes_its_first_administrator(engine: nw.Engine) -> None:
    """Anyone may add the first administrator; after that only administrators change it."""
    first = engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    assert first.active
    assert first.roles == frozenset({"administrator"})
    assert first.works_at("glasgow")
    with pytest.raises(nw.PermissionDenied, match="administrator"):
        engine.add_staff("sw-099", roles={"social_worker"}, sites={"london"}, actor=NOBODY)
    with pytest.raises(nw.StaffNotFound):
        engine.staff("sw-099")
    assert staff_log(engine) == [
        ("admin-1", "staff_added", "admin-1"),
        ("sw-099", "denied", "sw-099"),
    ]


def test_the_first_member_must_be_an_administrator(engine: nw.Engine) -> None:
    """On an empty roster, adding anyone but an administrator is refused and audited."""
    with pytest.raises(nw.PermissionDenied):
        engine.add_staff("sw-017", roles={"social_worker"}, sites={"london"}, actor=NOBODY)
    assert engine.roster() == []
    assert staff_log(engine) == [("sw-017", "denied", "sw-099")]


def test_adding_again_changes_roles_and_sites(engine: nw.Engine) -> None:
    """Adding an existing member replaces their roles and sites, audited each time."""
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    engine.add_staff("sw-017", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    changed = engine.add_staff(
        "sw-017", roles={"team_manager"}, sites={"london", "glasgow"}, actor=ADMIN
    )
    assert changed.roles == frozenset({"team_manager"})
    assert changed.sites == frozenset({"london", "glasgow"})
    assert not changed.works_at("jefferson-parish")
    assert changed.actor() == nw.Actor("sw-017", roles={"team_manager"})
    assert [m.id for m in engine.roster()] == ["admin-1", "sw-017"]
    details = [dict(e.detail) for e in engine.audit() if e.reference == "sw-017"]
    assert details == [
        {"roles": ["social_worker"], "sites": ["london"]},
        {"roles": ["team_manager"], "sites": ["glasgow", "london"]},
    ]


def test_removed_members_keep_their_row(engine: nw.Engine) -> None:
    """A removed member is off the roster but still known; removing them again is refused."""
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    engine.add_staff("sw-017", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    gone = engine.remove_staff("sw-017", actor=ADMIN, reason="left the team")
    assert not gone.active
    assert gone.removed_at is not None
    assert engine.staff("sw-017") == gone
    assert [m.id for m in engine.roster()] == ["admin-1"]
    assert [m.id for m in engine.roster(include_removed=True)] == ["admin-1", "sw-017"]
    with pytest.raises(nw.StaffNotFound, match="removed"):
        engine.remove_staff("sw-017", actor=ADMIN)
    removal = [e for e in engine.audit() if e.action == "staff_removed"]
    assert [(e.reference, e.reason) for e in removal] == [("sw-017", "left the team")]


def test_the_last_administrator_cannot_leave(engine: nw.Engine) -> None:
    """Removing the only administrator is refused; with a second one it is allowed."""
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    with pytest.raises(nw.InvalidInput, match="last administrator"):
        engine.remove_staff("admin-1", actor=ADMIN)
    engine.add_staff("admin-2", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    assert not engine.remove_staff("admin-1", actor=ADMIN).active


def test_roster_changes_keep_the_log_verifiable(engine: nw.Engine) -> None:
    """Roster entries form their own chains and verify deep like every other entry."""
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    engine.add_staff("sw-017", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    engine.remove_staff("sw-017", actor=ADMIN)
    positions = [(e.reference, e.position) for e in engine.audit()]
    assert positions == [("admin-1", 1), ("sw-017", 1), ("sw-017", 2)]
    assert engine.verify_audit(deep=True).ok


@pytest.mark.parametrize(
    ("roles", "sites", "field"),
    [
        (set(), {"london"}, "roles"),
        ({"social_worker"}, set(), "sites"),
        ({"social_worker"}, "london", "sites"),
        ({"social_worker"}, {"lon\x00don"}, "sites"),
        ({"bad\x07role"}, {"london"}, "roles"),
    ],
)
def test_bad_roster_input_is_refused_and_writes_nothing(
    engine: nw.Engine, roles: object, sites: object, field: str
) -> None:
    """Empty roles or sites, a bare string of sites, or bad characters: InvalidInput."""
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    before = engine.audit()
    with pytest.raises(nw.InvalidInput) as raised:
        engine.add_staff("sw-017", roles=roles, sites=sites, actor=ADMIN)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert engine.audit() == before
