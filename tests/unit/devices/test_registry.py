"""The device registry's records, import file and trust decisions (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devices import Event, Kind, RejectReason
from devices.errors import RegistryError
from devices.registry import Device, Elder, Enforcement, Registry, RiskTier, parse_csv
from rules import Action, Severity, unverified_alarm

PROFILES = frozenset({"wearable", "pendant", "fixed_terminal", "sensor"})
HEADER = (
    "device_id,gateway_id,profile,model,heartbeat_interval_s,"
    "elder_id,elder_name,living_alone,birth_year,risk_tier,timezone\n"
)


def parse(body: str, header: str = HEADER):
    return parse_csv(header + body, source="fleet.csv", profiles=PROFILES)


def error(body: str, header: str = HEADER) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        parse(body, header)
    return caught.value


# -- the import file -------------------------------------------------------------------


def test_a_fleet_file_gives_devices_and_their_elders():
    rows = parse(
        "w-1,gw-a,wearable,Acme W1,,e-1,Anna,true,1936,high,Europe/Helsinki\n"
        "t-1,gw-b,fixed_terminal,,86400,e-1,Anna,true,1936,high,Europe/Helsinki\n"
        "s-9,gw-b,sensor,,,,,,,,\n"
    )
    assert [(r.line, r.device.device_id, r.device.gateway_id) for r in rows] == [
        (2, "w-1", "gw-a"),
        (3, "t-1", "gw-b"),
        (4, "s-9", "gw-b"),
    ]
    assert rows[0].device.model == "Acme W1"
    assert rows[1].device.heartbeat_interval_s == 86_400
    assert rows[0].elder == Elder(
        elder_id="e-1",
        display_name="Anna",
        living_alone=True,
        birth_year=1936,
        risk_tier=RiskTier.HIGH,
        timezone="Europe/Helsinki",
    )
    assert rows[2].elder is None
    assert rows[2].device.elder_id is None


def test_only_the_three_required_columns_are_needed():
    rows = parse("w-1,gw-a,pendant\n", header="device_id,gateway_id,profile\n")
    assert rows[0].device == Device(device_id="w-1", gateway_id="gw-a", profile="pendant")


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("w 1,gw-a,wearable,,,,,,,,\n", 2, "device_id must match"),
        ("w-1,alerts,wearable,,,,,,,,\n", 2, "gateway_id"),
        ("w-1,gw/a,wearable,,,,,,,,\n", 2, "gateway_id"),
        ("w-1,gw-a,toaster,,,,,,,,\n", 2, "profile 'toaster'"),
        ("w-1,gw-a,wearable,,0,,,,,,\n", 2, "heartbeat_interval_s must be positive"),
        ("w-1,gw-a,wearable,,often,,,,,,\n", 2, "heartbeat_interval_s must be a whole number"),
        ("w-1,gw-a,wearable,,,e-1,Anna,perhaps,,,\n", 2, "living_alone must be true or false"),
        ("w-1,gw-a,wearable,,,e-1,Anna,,1850,,\n", 2, "birth_year"),
        ("w-1,gw-a,wearable,,,e-1,Anna,,,extreme,\n", 2, "risk_tier"),
        ("w-1,gw-a,wearable,,,e-1,Anna,,,,Mars/Olympus\n", 2, "timezone 'Mars/Olympus'"),
        ("w-1,gw-a,wearable,,,,,yes,,,\n", 2, "elder columns need elder_id and elder_name"),
        (
            "w-1,gw-a,wearable,,,,,,,,\nw-2,gw-a,wearable,,,,,,,,\nw-1,gw-b,wearable,,,,,,,,\n",
            4,
            "already on line 2",
        ),
        (
            "w-1,gw-a,wearable,,,e-1,Anna,,,,\nw-2,gw-a,wearable,,,e-1,Bert,,,,\n",
            3,
            "elder 'e-1' is described differently",
        ),
    ],
)
def test_a_bad_line_stops_the_import_naming_its_line(body, line, fragment):
    caught = error(body)
    assert caught.line == line
    assert fragment in caught.detail
    assert str(caught).startswith(f"fleet.csv:{line}: ")


def test_missing_and_unknown_columns_are_reported_on_the_header_line():
    assert "missing column(s): profile" in error("w-1,gw-a\n", header="device_id,gateway_id\n").detail
    caught = error("w-1,gw-a,wearable,x\n", header="device_id,gateway_id,profile,colour\n")
    assert (caught.line, caught.detail.split(";")[0]) == (1, "unknown column(s): colour")


def test_profiles_from_a_rules_file_are_accepted():
    rows = parse_csv("device_id,gateway_id,profile\nb-1,gw,bed_sensor\n", source="f", profiles={"bed_sensor"})
    assert rows[0].device.profile == "bed_sensor"


# -- trust decisions --------------------------------------------------------------------

FLEET = [
    Device(device_id="w-1", gateway_id="gw-a", profile="wearable", elder_id="e-1"),
    Device(device_id="t-1", gateway_id="gw-b", profile="fixed_terminal"),
]


def test_an_empty_registry_is_not_enforced_by_default_and_trusts_everyone():
    registry = Registry()
    assert not registry.enforced
    assert registry.check("anything", "gw-x").trusted


def test_once_a_device_is_registered_unknown_devices_are_refused():
    registry = Registry(FLEET)
    assert registry.enforced
    assert registry.check("w-1", "gw-a").trusted
    verdict = registry.check("w-9", "gw-a")
    assert (verdict.trusted, verdict.reason, verdict.device) == (False, RejectReason.UNKNOWN_DEVICE, None)


def test_a_device_under_another_gateway_is_a_mismatch_even_when_not_enforced():
    for enforcement in Enforcement:
        verdict = Registry(FLEET, enforcement=enforcement).check("w-1", "gw-b")
        assert verdict.reason is RejectReason.GATEWAY_MISMATCH
        assert verdict.device == FLEET[0]


def test_enforce_refuses_even_with_an_empty_registry_and_off_never_refuses_unknowns():
    assert (
        Registry(enforcement=Enforcement.ENFORCE).check("w-1", "gw-a").reason is RejectReason.UNKNOWN_DEVICE
    )
    assert Registry(FLEET, enforcement=Enforcement.OFF).check("w-9", "gw-a").trusted


@pytest.mark.parametrize(
    ("tier", "living_alone", "birth_year", "high"),
    [
        (RiskTier.HIGH, False, None, True),
        (RiskTier.STANDARD, True, 1940, True),  # 86 in 2026, alone
        (RiskTier.STANDARD, True, 1942, False),  # 84
        (RiskTier.STANDARD, False, 1930, False),  # very old, not alone
        (RiskTier.ELEVATED, True, None, False),
    ],
)
def test_high_risk_is_the_care_teams_flag_or_living_alone_and_very_old(tier, living_alone, birth_year, high):
    elder = Elder(
        elder_id="e", display_name="E", living_alone=living_alone, birth_year=birth_year, risk_tier=tier
    )
    assert elder.high_risk(year=2026) is high


# -- what an untrusted emergency becomes ---------------------------------------------------


def test_an_untrusted_panic_becomes_a_critical_unverified_alarm_not_the_elders_panic():
    at = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    event = Event(device_id="w-1", kind=Kind.FALL, observed_at=at, fields={}, event_key="k1")
    hit = unverified_alarm(event, reason="gateway_mismatch", gateway_id="gw-b", received_at=at)
    assert (hit.action, hit.rule, hit.severity, hit.emergency) == (
        Action.RAISE,
        "unverified_alarm",
        Severity.CRITICAL,
        True,
    )
    assert hit.dedup_key == "w-1:unverified_alarm"
    assert (hit.evidence["reason"], hit.evidence["kind"], hit.evidence["topic_gateway_id"]) == (
        "gateway_mismatch",
        "fall",
        "gw-b",
    )
