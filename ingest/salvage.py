"""What is left of a message the database refused: a quarantine row and its decisions.

Used only after the database refused a message's rows on their own (see
:meth:`ingest.storage.TelemetryWriter.write`). The message's raw bytes go to
quarantine with the database's reason, and its alert decisions are kept:
a panic must not go unanswered because a companion value could not be
stored. The devices package already sanitises every string it emits; the
scrubbing here is the storage layer's own last guard, for whatever slipped
past it (a rule's evidence, a field no codec checked).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from devices import RejectReason
from ingest.db_errors import short_reason
from ingest.pipeline import quarantine

if TYPE_CHECKING:
    import alerts
    from ingest.pipeline import MessageRows, QuarantineRow


def scrub_text(value: str) -> str:
    r"""Replace what PostgreSQL text cannot hold (NUL, also as a JSON ``\u0000``) and lone surrogates."""
    if value.isascii() and "\x00" not in value and "\\u0000" not in value:
        return value
    cleaned = value.encode("utf-8", "replace").decode("utf-8")
    return cleaned.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_text(str(key)): _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _scrub_row(row: QuarantineRow) -> QuarantineRow:
    received_at, topic, payload, digest, reason, detail, gateway_id, device_id, dup = row
    return (
        received_at,
        scrub_text(topic),
        payload,
        digest,
        reason,
        scrub_text(detail),
        None if gateway_id is None else scrub_text(gateway_id),
        None if device_id is None else scrub_text(device_id),
        dup,
    )


def scrubbed_request(request: alerts.AlertRequest) -> alerts.AlertRequest:
    """The same decision with every string made storable."""
    evidence = request.evidence
    return replace(
        request,
        rule=scrub_text(request.rule),
        device_id=scrub_text(request.device_id),
        dedup_key=scrub_text(request.dedup_key),
        occurrence_key=scrub_text(request.occurrence_key),
        evidence=None if evidence is None else {scrub_text(k): _scrub(v) for k, v in evidence.items()},
    )


def fail_safe_request(request: alerts.AlertRequest, exc: BaseException) -> alerts.AlertRequest | None:
    """The least an emergency decision can be stored as; None for any other decision.

    It names the rule and the device and says that storage refused the
    rest: enough to send someone. Its occurrence key is a digest, so a
    redelivery of the same message still counts once.
    """
    if not (request.action == "raise" and request.emergency):
        return None
    device_id = scrub_text(request.device_id)
    rule = scrub_text(request.rule)
    return replace(
        request,
        device_id=device_id,
        rule=rule,
        dedup_key=f"{device_id}:{rule}",
        occurrence_key=hashlib.sha256(request.occurrence_key.encode("utf-8", "replace")).hexdigest()[:32],
        evidence={"flags": "storage_rejected", "storage_error": short_reason(exc)},
    )


def reject_message(message: MessageRows, exc: BaseException) -> list[list[alerts.AlertRequest]]:
    """Turn ``message`` into its quarantine row; return its decisions in ever simpler forms.

    The caller tries each form in turn until the database takes one: the
    decisions scrubbed, then their fail-safe versions, then none at all
    (the quarantine row alone still records the message).
    """
    decisions = list(message.alerts)
    replacement = type(message)(message.envelope)
    quarantine(
        replacement, RejectReason.STORAGE_REJECTED, short_reason(exc), message.gateway_id or None, None
    )
    message.quarantine[:] = [_scrub_row(row) for row in replacement.quarantine]
    message.reasons[:] = replacement.reasons
    message.readings.clear()
    message.events.clear()
    return [
        [scrubbed_request(request) for request in decisions],
        [fail_safe for request in decisions if (fail_safe := fail_safe_request(request, exc)) is not None],
        [],
    ]
