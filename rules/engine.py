"""The streaming rule engine: canonical events in, alert decisions out.

Pure code: no I/O, no clock of its own. Event rules run on *device time*, so
replaying a recording at any speed yields the same decisions; only the rules
about silence and waiting (a device that stops talking, a fall window whose
device went quiet, inactivity) look at the service clock, passed to
:meth:`RuleEngine.tick` and to :meth:`RuleEngine.observe` as ``received_at``.

A panic is never merged away: every press is a RAISE with its own
occurrence key; the alert store adds presses to the open alert. A late
reading (older than the device's newest by more than the grace) is kept in
the window but never fires a threshold alert; a late panic or fall always
alerts, with its delivery delay in the evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from devices import Event, Kind, TimeSource
from rules.config import RulesConfig, Thresholds
from rules.failsafe import fail_safe_hit, ignore_failure, occurrence_key_of
from rules.hits import Action, EvidenceValue, RuleHit, Severity
from rules.window import Run, Window

if TYPE_CHECKING:
    from collections.abc import Callable

    from rules.failsafe import FailureHook

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RANK = {None: 0, Severity.WARNING: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}
#: Events that do not mean the elder did something (the device or a carer reported).
_PASSIVE_KINDS = frozenset({Kind.HEARTBEAT, Kind.BATTERY, Kind.DEVICE_FAULT, Kind.CARE})


_ONE_MS = timedelta(milliseconds=1)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_MS


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceContext:
    """What the engine needs to know about a device's wearer.

    Attributes:
        profile: the device profile (``wearable``, ``fixed_terminal``...).
        elder_id: the elder it belongs to, for per-elder overrides.
        living_alone: watch for inactivity.
        high_risk: living alone or very old: shorter silence timeouts.
        heartbeat_interval_s: the registry's check-in interval for this
            device, overriding its profile's.
    """

    profile: str = "wearable"
    elder_id: str | None = None
    living_alone: bool = False
    high_risk: bool = False
    #: The registry's check-in interval for this device; None: its profile's.
    heartbeat_interval_s: float | None = None


@dataclass(slots=True)
class _Hold:
    """A fall waiting out its cancel window."""

    event_key: str
    device_ms: int
    #: The fall's own time, to the microsecond: the alert's triggered_at must
    #: equal the stored event's time (ms above are for window arithmetic).
    device_time: datetime
    due_ms: int
    received_at: datetime
    severity_evidence: dict[str, EvidenceValue]


@dataclass(slots=True)
class _Device:
    device_id: str
    context: DeviceContext
    limits: Thresholds
    hr: Window
    #: One run per heart-rate condition, in the order of :func:`_hr_conditions`.
    hr_runs: tuple[Run, ...] = field(default_factory=lambda: tuple(Run() for _ in range(6)))
    #: The six heart-rate conditions of this device's thresholds (see :func:`_hr_conditions`).
    hr_conditions: tuple[Callable[[Any], Any], ...] = ()
    #: Set by restores: the runs must be rebuilt from the window before use.
    hr_runs_stale: bool = False
    watermark_ms: int = -(2**62)
    last_seen_at: datetime | None = None
    last_activity_at: datetime | None = None
    raised: dict[str, Severity] = field(default_factory=dict)
    holds: list[_Hold] = field(default_factory=list)
    cancels_ms: list[int] = field(default_factory=list)
    #: SpO2 readings in device time, so "consecutive" survives out-of-order delivery.
    spo2: Window = field(default_factory=lambda: Window(3_600_000))
    not_worn_since_ms: int | None = None
    not_worn_received_at: datetime | None = None


class RuleEngine:
    """Keeps per-device state and turns events into :class:`RuleHit` decisions."""

    def __init__(
        self,
        config: RulesConfig | None = None,
        *,
        context: Callable[[str], DeviceContext] | None = None,
        on_failure: FailureHook = ignore_failure,
    ) -> None:
        self._config = config or RulesConfig.default()
        self._context = context or self._configured_context
        self._devices: dict[str, _Device] = {}
        self._on_failure = on_failure

    def _configured_context(self, device_id: str) -> DeviceContext:
        """Without a device registry: the profile the config file names, else a wearable."""
        return DeviceContext(profile=self._config.device_profiles.get(device_id, "wearable"))

    # -- public API ----------------------------------------------------------

    def observe(self, event: Event, *, received_at: datetime) -> list[RuleHit]:
        """Evaluate one event; return the decisions it causes, in order.

        Never raises: a rule that fails is reported to ``on_failure`` and
        costs only its own decision, except that a life-safety event whose
        evaluation failed raises a fail-safe critical alert instead
        (:mod:`rules.failsafe`).
        """
        try:
            return self._observe(event, received_at)
        except Exception as exc:  # noqa: BLE001 - containing any failure is the point
            self._on_failure(_RULE_NAMES.get(event.kind, event.kind.value), exc)
            return [fail_safe_hit(event, exc)] if event.is_life_safety else []

    def _observe(self, event: Event, received_at: datetime) -> list[RuleHit]:
        device = self._device(event.device_id)
        hits: list[RuleHit] = []
        if "device_silent" in device.raised:
            hits.append(
                self._clear(device, "device_silent", received_at, {"back_at": received_at.isoformat()})
            )
        device.last_seen_at = received_at
        if device.last_activity_at is None:
            device.last_activity_at = received_at  # the inactivity clock starts at first contact
        if event.kind not in _PASSIVE_KINDS:
            device.last_activity_at = received_at
            if "inactivity" in device.raised:
                hits.append(self._clear(device, "inactivity", received_at, {}))
        event_ms = _ms(event.observed_at)
        late = event_ms < device.watermark_ms - device.limits.late_grace_s * 1000
        device.watermark_ms = max(device.watermark_ms, event_ms)
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            hits.extend(handler(self, device, event, received_at, late))
        hits.extend(self._expire_holds(device, now=None))
        hits.extend(self._check_not_worn(device, now=None))
        return hits

    def tick(self, now: datetime) -> list[RuleHit]:
        """Evaluate the rules that depend on the service clock."""
        hits: list[RuleHit] = []
        for device in self._devices.values():
            # One device whose state trips a rule must not stop the clock for the others.
            try:
                hits.extend(self._expire_holds(device, now=now))
                hits.extend(self._check_not_worn(device, now=now))
                hits.extend(self._check_silence(device, now))
                hits.extend(self._check_inactivity(device, now))
            except Exception as exc:  # noqa: BLE001 - contained, like observe()
                self._on_failure("service_clock", exc)
        return hits

    def restore_alert(self, device_id: str, rule: str, severity: Severity) -> None:
        """Remember an alert that is open in the store (after a restart)."""
        self._device(device_id).raised[rule] = severity

    def restore_hold(
        self, device_id: str, event_key: str, device_time: datetime, received_at: datetime
    ) -> None:
        """Resume waiting out a fall's cancel window (after a restart)."""
        device = self._device(device_id)
        ms = _ms(device_time)
        due_ms = ms + int(device.limits.fall_cancel_window_s * 1000)
        device.holds.append(_Hold(event_key, ms, device_time, due_ms, received_at, {}))

    def restore_seen(
        self, device_id: str, *, last_seen_at: datetime, last_activity_at: datetime | None
    ) -> None:
        """Set when a device last spoke (after a restart), for silence rules."""
        device = self._device(device_id)
        device.last_seen_at = last_seen_at
        device.last_activity_at = last_activity_at or last_seen_at

    def silence_limit_s(self, device_id: str) -> float:
        """Seconds without a message before ``device_id`` counts as silent (for supervision views)."""
        return self._silence_limit_s(self._device(device_id))

    @property
    def device_ids(self) -> list[str]:
        """Every device the engine holds state for."""
        return list(self._devices)

    def refresh(self, device_id: str) -> None:
        """Read a device's context again (its registry record changed), keeping its state.

        Held falls, raised alerts and heart-rate windows survive; only the
        thresholds change, and the heart-rate runs are rebuilt from the window.
        """
        device = self._devices.get(device_id)
        if device is None:
            return
        device.context = self._context(device_id)
        device.limits = self._limits(device.context, device_id)
        device.hr_conditions = _hr_conditions(device.limits)
        device.hr_runs_stale = True

    def restore_reading(self, event: Event) -> None:
        """Put a recent reading back in its window without evaluating it."""
        device = self._device(event.device_id)
        if event.kind is Kind.HEART_RATE:
            value = _finite(event.fields.get("bpm"))
            if value is not None:
                device.hr.add(_ms(event.observed_at), value)
                device.hr_runs_stale = True
        device.watermark_ms = max(device.watermark_ms, _ms(event.observed_at))

    @property
    def device_count(self) -> int:
        """How many devices have state."""
        return len(self._devices)

    # -- per-kind rules ------------------------------------------------------

    def _panic(self, device: _Device, event: Event, received_at: datetime, _late: bool) -> list[RuleHit]:
        """A panic press, or an alarm of unknown cause (treated alike: it most often is one)."""
        evidence = _delivery(event, received_at)
        for name in ("button", "label"):
            if isinstance(value := event.fields.get(name), str):
                evidence[name] = value
        rule = event.kind.value  # "panic" or "alarm"
        device.raised[rule] = Severity.CRITICAL
        return [self._hit(Action.RAISE, device, rule, Severity.CRITICAL, event, evidence=evidence)]

    def _fall(self, device: _Device, event: Event, received_at: datetime, _late: bool) -> list[RuleHit]:
        evidence = _delivery(event, received_at)
        if isinstance(confidence := event.fields.get("confidence"), float | int):
            evidence["confidence"] = float(confidence)
        fall_ms = _ms(event.observed_at)
        due_ms = fall_ms + int(device.limits.fall_cancel_window_s * 1000)
        cancelled = any(fall_ms <= cancel <= due_ms for cancel in device.cancels_ms)
        if event.fields.get("stage") == "warning":
            if cancelled:  # the wearer's "I'm OK" arrived first
                return []
            evidence["stage"] = "warning"
            # Never downgrade what the engine last raised; the store never downgrades either.
            if _RANK[device.raised.get("fall")] < _RANK[Severity.MAJOR]:
                device.raised["fall"] = Severity.MAJOR
            return [self._hit(Action.RAISE, device, "fall", Severity.MAJOR, event, evidence=evidence)]
        # One key for the hold, its cancel and its raise: the store matches them on it.
        key = occurrence_key_of(event)
        if cancelled:
            return [
                self._hit(
                    Action.CANCEL,
                    device,
                    "fall",
                    Severity.CRITICAL,
                    event,
                    evidence=evidence,
                    occurrence_key=key,
                )
            ]
        hold = _Hold(key, fall_ms, event.observed_at, due_ms, received_at, evidence)
        if self._window_passed_by_device_time(device, hold):
            # Arrived after its own window (a late delivery): alert now.
            return [self._raise_fall(device, hold)]
        device.holds.append(hold)
        return [
            self._hit(
                Action.HOLD,
                device,
                "fall",
                Severity.CRITICAL,
                event,
                evidence=evidence,
                due_at=_at(due_ms),
                occurrence_key=key,
            )
        ]

    def _cancel(self, device: _Device, event: Event, _received_at: datetime, _late: bool) -> list[RuleHit]:
        cancel_ms = _ms(event.observed_at)
        recent = [c for c in device.cancels_ms if c > cancel_ms - 600_000][-20:]
        device.cancels_ms = [*recent, cancel_ms]
        hits: list[RuleHit] = []
        remaining: list[_Hold] = []
        for hold in device.holds:
            if hold.device_ms <= cancel_ms <= hold.due_ms:
                hits.append(
                    self._hit(
                        Action.CANCEL,
                        device,
                        "fall",
                        Severity.CRITICAL,
                        None,
                        occurrence_key=hold.event_key,
                        triggered_at=hold.device_time,
                        evidence={"cancelled_after_s": (cancel_ms - hold.device_ms) / 1000},
                    )
                )
            else:
                remaining.append(hold)
        device.holds = remaining
        if device.raised.get("fall") == Severity.MAJOR:  # a pre-alert the wearer called off
            hits.append(self._clear(device, "fall", event.observed_at, {"cancelled_by": "wearer"}))
        return hits

    def _heart_rate(self, device: _Device, event: Event, _received_at: datetime, late: bool) -> list[RuleHit]:
        bpm = _finite(event.fields.get("bpm"))
        if bpm is None:
            return []
        limits = device.limits
        gap_ms = int(limits.hr_max_gap_s * 1000)
        at_ms = _ms(event.observed_at)
        in_order = device.hr.add(at_ms, bpm)
        conditions = device.hr_conditions
        if in_order and not device.hr_runs_stale:
            held = [
                run.update(at_ms, met=met(bpm), max_gap_ms=gap_ms)
                for run, met in zip(device.hr_runs, conditions, strict=True)
            ]
        else:  # out of order, or just restored: recompute from the whole window
            values = device.hr.values
            newest = device.hr.newest_ms
            assert newest is not None  # noqa: S101 - a reading was just added
            held = []
            for run, met in zip(device.hr_runs, conditions, strict=True):
                held_ms = device.hr.held_for_ms(met(values), gap_ms)
                run.reset(newest, held_ms)
                held.append(held_ms)
            device.hr_runs_stale = False
        if late:
            return []
        high_critical, high_major, high_normal, low_critical, low_major, low_normal = held
        hits: list[RuleHit] = []
        for rule, critical, major, normal in (
            (
                "heart_rate_high",
                high_critical >= limits.hr_high_critical_s * 1000,
                high_major >= limits.hr_high_major_s * 1000,
                high_normal >= limits.hr_clear_after_s * 1000,
            ),
            (
                "heart_rate_low",
                low_critical >= limits.hr_low_critical_s * 1000,
                low_major >= limits.hr_low_major_s * 1000,
                low_normal >= limits.hr_clear_after_s * 1000,
            ),
        ):
            level = Severity.CRITICAL if critical else Severity.MAJOR if major else None
            if level is not None and _RANK[level] > _RANK[device.raised.get(rule)]:
                device.raised[rule] = level
                hits.append(self._hit(Action.RAISE, device, rule, level, event, evidence={"bpm": bpm}))
            elif rule in device.raised and normal:
                hits.append(self._clear(device, rule, event.observed_at, {"bpm": bpm}))
        return hits

    def _spo2(self, device: _Device, event: Event, _received_at: datetime, late: bool) -> list[RuleHit]:
        pct = _finite(event.fields.get("pct"))
        if pct is None:
            return []
        at_ms = _ms(event.observed_at)
        device.spo2.add(at_ms, pct)
        if late:
            return []
        limits = device.limits
        run = device.spo2.run_length_at(at_ms, device.spo2.values <= limits.spo2_critical_pct)
        low_run = run >= limits.spo2_consecutive
        evidence: dict[str, EvidenceValue] = {"pct": pct, "consecutive": run}
        if low_run and "spo2_low" not in device.raised:
            device.raised["spo2_low"] = Severity.CRITICAL
            return [self._hit(Action.RAISE, device, "spo2_low", Severity.CRITICAL, event, evidence=evidence)]
        if "spo2_low" in device.raised and device.spo2.values[-1] >= limits.spo2_clear_pct:
            return [self._clear(device, "spo2_low", event.observed_at, evidence)]
        return []

    def _body_temp(self, device: _Device, event: Event, _received_at: datetime, late: bool) -> list[RuleHit]:
        celsius = _finite(event.fields.get("celsius"))
        if late or celsius is None:
            return []
        limits = device.limits
        evidence: dict[str, EvidenceValue] = {"celsius": float(celsius)}
        hits: list[RuleHit] = []
        for rule, severity, firing, normal in (
            (
                "body_temp_low",
                Severity.CRITICAL,
                celsius <= limits.temp_low_critical_c,
                celsius > limits.temp_low_critical_c + limits.temp_hysteresis_c,
            ),
            (
                "body_temp_high",
                Severity.MAJOR,
                celsius >= limits.temp_high_major_c,
                celsius < limits.temp_high_major_c - limits.temp_hysteresis_c,
            ),
        ):
            if firing and rule not in device.raised:
                device.raised[rule] = severity
                hits.append(self._hit(Action.RAISE, device, rule, severity, event, evidence=evidence))
            elif normal and rule in device.raised:
                hits.append(self._clear(device, rule, event.observed_at, evidence))
        return hits

    def _battery(self, device: _Device, event: Event, _received_at: datetime, late: bool) -> list[RuleHit]:
        pct = _finite(event.fields.get("pct", event.fields.get("battery_pct")))
        if late or pct is None:
            return []
        limits = device.limits
        level = (
            Severity.MAJOR
            if pct <= limits.battery_major_pct
            else Severity.WARNING
            if pct <= limits.battery_warning_pct
            else None
        )
        evidence: dict[str, EvidenceValue] = {"pct": float(pct)}
        if level is not None and _RANK[level] > _RANK[device.raised.get("battery_low")]:
            device.raised["battery_low"] = level
            return [self._hit(Action.RAISE, device, "battery_low", level, event, evidence=evidence)]
        if (
            "battery_low" in device.raised
            and pct >= limits.battery_warning_pct + limits.battery_hysteresis_pct
        ):
            return [self._clear(device, "battery_low", event.observed_at, evidence)]
        return []

    def _worn(self, device: _Device, event: Event, received_at: datetime, late: bool) -> list[RuleHit]:
        if late:
            return []
        if event.fields.get("on") is False:
            if device.not_worn_since_ms is None:
                device.not_worn_since_ms = _ms(event.observed_at)
                device.not_worn_received_at = received_at
            return []
        device.not_worn_since_ms = None
        device.not_worn_received_at = None
        if "not_worn" in device.raised:
            return [self._clear(device, "not_worn", event.observed_at, {})]
        return []

    # -- time-driven rules ---------------------------------------------------

    def _expire_holds(self, device: _Device, now: datetime | None) -> list[RuleHit]:
        if not device.holds:
            return []
        window = timedelta(seconds=device.limits.fall_cancel_window_s)
        due: list[_Hold] = []
        remaining: list[_Hold] = []
        for hold in device.holds:
            expired = self._window_passed_by_device_time(device, hold)
            if now is not None and now >= hold.received_at + window:
                expired = True
            (due if expired else remaining).append(hold)
        device.holds = remaining
        return [self._raise_fall(device, hold) for hold in due]

    @staticmethod
    def _window_passed_by_device_time(device: _Device, hold: _Hold) -> bool:
        """The device's own clock is past the window plus the late grace.

        The grace matters: a cancel may arrive a little out of order behind a
        later message, and it must still cancel.
        """
        grace_ms = int(device.limits.late_grace_s * 1000)
        return device.watermark_ms >= hold.due_ms + grace_ms

    def _raise_fall(self, device: _Device, hold: _Hold) -> RuleHit:
        device.raised["fall"] = Severity.CRITICAL
        return self._hit(
            Action.RAISE,
            device,
            "fall",
            Severity.CRITICAL,
            None,
            occurrence_key=hold.event_key,
            triggered_at=hold.device_time,
            evidence={**hold.severity_evidence, "cancel_window_s": device.limits.fall_cancel_window_s},
        )

    def _check_not_worn(self, device: _Device, now: datetime | None) -> list[RuleHit]:
        since = device.not_worn_since_ms
        if since is None or "not_worn" in device.raised or device.not_worn_received_at is None:
            return []
        limit_ms = int(device.limits.not_worn_s * 1000)
        by_device = device.watermark_ms >= since + limit_ms
        by_clock = now is not None and now >= device.not_worn_received_at + timedelta(milliseconds=limit_ms)
        if not (by_device or by_clock):
            return []
        evidence: dict[str, EvidenceValue] = {"not_worn_for_s": device.limits.not_worn_s}
        return [self._raise_warning(device, "not_worn", f"worn-off:{since}", _at(since), evidence)]

    def _check_silence(self, device: _Device, now: datetime) -> list[RuleHit]:
        if device.last_seen_at is None or "device_silent" in device.raised:
            return []
        timeout_s = self._silence_limit_s(device)
        if (now - device.last_seen_at).total_seconds() <= timeout_s:
            return []
        evidence: dict[str, EvidenceValue] = {
            "last_seen_at": device.last_seen_at.isoformat(),
            "timeout_s": timeout_s,
        }
        return [
            self._raise_warning(device, "device_silent", f"silent:{_ms(device.last_seen_at)}", now, evidence)
        ]

    def _check_inactivity(self, device: _Device, now: datetime) -> list[RuleHit]:
        if (
            not device.context.living_alone
            or device.last_activity_at is None
            or "inactivity" in device.raised
        ):
            return []
        if (now - device.last_activity_at).total_seconds() <= device.limits.inactivity_s:
            return []
        evidence: dict[str, EvidenceValue] = {"last_activity_at": device.last_activity_at.isoformat()}
        key = f"inactive:{_ms(device.last_activity_at)}"
        return [self._raise_warning(device, "inactivity", key, now, evidence)]

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _silence_limit_s(device: _Device) -> float:
        limits = device.limits
        return limits.silence_limit_s * (limits.high_risk_silence_factor if device.context.high_risk else 1.0)

    def _raise_warning(
        self,
        device: _Device,
        rule: str,
        occurrence_key: str,
        triggered_at: datetime,
        evidence: dict[str, EvidenceValue],
    ) -> RuleHit:
        """Raise a warning that no single event caused (a timer ran out)."""
        device.raised[rule] = Severity.WARNING
        return self._hit(
            Action.RAISE,
            device,
            rule,
            Severity.WARNING,
            None,
            occurrence_key=occurrence_key,
            triggered_at=triggered_at,
            evidence=evidence,
        )

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            context = self._context(device_id)
            limits = self._limits(context, device_id)
            longest_s = max(
                limits.hr_high_major_s,
                limits.hr_high_critical_s,
                limits.hr_low_major_s,
                limits.hr_low_critical_s,
                limits.hr_clear_after_s,
            )
            horizon_s = longest_s + limits.hr_max_gap_s
            device = _Device(device_id, context, limits, Window(int(horizon_s * 1000)))
            device.hr_conditions = _hr_conditions(limits)
            self._devices[device_id] = device
        return device

    def _limits(self, context: DeviceContext, device_id: str) -> Thresholds:
        limits = self._config.thresholds(
            profile=context.profile, elder_id=context.elder_id, device_id=device_id
        )
        if context.heartbeat_interval_s is not None:
            limits = replace(limits, heartbeat_interval_s=context.heartbeat_interval_s)
        return limits

    def _hit(
        self,
        action: Action,
        device: _Device,
        rule: str,
        severity: Severity,
        event: Event | None,
        *,
        evidence: dict[str, EvidenceValue],
        occurrence_key: str | None = None,
        triggered_at: datetime | None = None,
        due_at: datetime | None = None,
    ) -> RuleHit:
        if event is not None:
            occurrence_key = occurrence_key or occurrence_key_of(event)
            triggered_at = triggered_at or event.observed_at
        assert occurrence_key is not None  # noqa: S101 - callers pass one or an event
        assert triggered_at is not None  # noqa: S101
        return RuleHit(
            action=action,
            rule=rule,
            device_id=device.device_id,
            severity=severity,
            emergency=severity is Severity.CRITICAL,
            dedup_key=f"{device.device_id}:{rule}",
            occurrence_key=occurrence_key,
            triggered_at=triggered_at,
            due_at=due_at,
            evidence=evidence,
        )

    def _clear(self, device: _Device, rule: str, at: datetime, evidence: dict[str, EvidenceValue]) -> RuleHit:
        severity = device.raised.pop(rule)
        return self._hit(
            Action.CLEAR,
            device,
            rule,
            severity,
            None,
            occurrence_key=f"clear:{rule}:{_ms(at)}",
            triggered_at=at,
            evidence=evidence,
        )


def _hr_conditions(limits: Thresholds) -> tuple[Callable[[Any], Any], ...]:
    """The six heart-rate conditions; each works on a number or a numpy array.

    high critical, high major, back to normal from high, low critical, low
    major, back to normal from low.
    """
    high_normal = limits.hr_high_major_bpm - limits.hr_hysteresis_bpm
    low_normal = limits.hr_low_major_bpm + limits.hr_hysteresis_bpm
    return (
        lambda v: v >= limits.hr_high_critical_bpm,
        lambda v: v > limits.hr_high_major_bpm,
        lambda v: v <= high_normal,
        lambda v: v <= limits.hr_low_critical_bpm,
        lambda v: v < limits.hr_low_major_bpm,
        lambda v: v >= low_normal,
    )


def _finite(value: object) -> float | None:
    """A usable number, or None: NaN must never reach a threshold comparison."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _delivery(event: Event, received_at: datetime) -> dict[str, EvidenceValue]:
    """Delivery delay and time quality of a life-safety event."""
    device_time = event.device_time or event.observed_at
    evidence: dict[str, EvidenceValue] = {
        "delivery_delay_s": round((received_at - device_time).total_seconds(), 3),
        "time_source": event.time_source.value,
    }
    if event.time_source is TimeSource.RECEIVED or event.flags:
        evidence["flags"] = ",".join(sorted(event.flags))
    return evidence


_HANDLERS: dict[Kind, Callable[[RuleEngine, _Device, Event, datetime, bool], list[RuleHit]]] = {
    Kind.PANIC: RuleEngine._panic,  # noqa: SLF001
    Kind.ALARM: RuleEngine._panic,  # noqa: SLF001
    Kind.FALL: RuleEngine._fall,  # noqa: SLF001
    Kind.CANCEL: RuleEngine._cancel,  # noqa: SLF001
    Kind.HEART_RATE: RuleEngine._heart_rate,  # noqa: SLF001
    Kind.SPO2: RuleEngine._spo2,  # noqa: SLF001
    Kind.BODY_TEMP: RuleEngine._body_temp,  # noqa: SLF001
    Kind.BATTERY: RuleEngine._battery,  # noqa: SLF001
    Kind.HEARTBEAT: RuleEngine._battery,  # noqa: SLF001 - heartbeats may carry battery_pct
    Kind.WORN: RuleEngine._worn,  # noqa: SLF001
}


#: The rule a kind's handler stands for, for the failure metric's label.
_RULE_NAMES: dict[Kind, str] = {kind: handler.__name__.lstrip("_") for kind, handler in _HANDLERS.items()}


def unverified_alarm(event: Event, *, reason: str, gateway_id: str, received_at: datetime) -> RuleHit:
    """Put a panic, fall or alarm from an unknown or mismatched device in front of an operator.

    Such an event must not raise the normal alert of whichever elder the
    device id names (a spoofed frame could send a responder to the wrong
    door, and a spoofed cancel could hide a real fall), but it may be a real
    person pressing a button on a device nobody enrolled. So it becomes its
    own critical alert, ``unverified_alarm``, for an operator to verify. It
    skips the fall cancel window: a wearer's cancel from such a device would
    not be trusted either.
    """
    evidence = _delivery(event, received_at)
    evidence["reason"] = reason
    evidence["kind"] = event.kind.value
    evidence["topic_gateway_id"] = gateway_id
    return RuleHit(
        action=Action.RAISE,
        rule="unverified_alarm",
        device_id=event.device_id,
        severity=Severity.CRITICAL,
        emergency=True,
        dedup_key=f"{event.device_id}:unverified_alarm",
        occurrence_key=occurrence_key_of(event),
        triggered_at=event.observed_at,
        evidence=evidence,
    )
