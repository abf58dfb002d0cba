"""Lifelike dossier histories as the JSON agency systems send (used by the demo and tests).

Each function returns the events of one dossier in order. Times are Vinh local time
(UTC+7) on working days; event ids are UUIDv5 of the dossier code and the step, so the same
scenario always produces the same ids (replays are recognisable as such).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["dossier_code", "dossier_life"]

VN = timezone(timedelta(hours=7))
_NS = uuid.UUID("0b8e3c55-1f7a-5d0e-8c2b-6a4f2e9d7c11")


def dossier_code(agency_code: str, day: datetime, number: int) -> str:
    return f"{agency_code}-{day:%y%m%d}-{number:04d}"


def _event(
    code: str, agency: str, event_type: str, at: datetime, payload: dict[str, Any], n: int
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(_NS, f"{code}|{n}|{event_type}")),
        "event_type": event_type,
        "occurred_at": at.isoformat(),
        "source_system": "scenario",
        "agency_code": agency,
        "dossier_code": code,
        "payload": payload,
    }


def dossier_life(
    code: str,
    agency: str,
    procedure_code: str,
    start: datetime,
    *,
    channel: int = 2,
    applicant: str = "Nguyễn Văn An",
    transfer_to: str | None = None,
    supplement: bool = False,
    finish: bool = True,
    rating: int | None = 5,
) -> list[dict[str, Any]]:
    """Submitted, received, steps (optionally a supplement round and a transfer), processed,
    returned, rated. ``finish=False`` leaves it in processing."""
    t = start.astimezone(VN)
    events: list[dict[str, Any]] = []

    def add(event_type: str, payload: dict[str, Any], minutes: int = 30) -> None:
        nonlocal t
        t += timedelta(minutes=minutes)
        events.append(_event(code, holder, event_type, t, payload, len(events)))

    holder = agency
    add(
        "DossierSubmitted",
        {
            "procedure_code": procedure_code,
            "channel": channel,
            "applicant_name": applicant,
            "applicant_id_number": None,
            "submitted_at": t.isoformat(),
        },
        minutes=0,
    )
    add("DossierReceived", {"received_at": t.isoformat(), "appointment_date": None})
    add(
        "StepStarted",
        {"step_no": 1, "step_name": "Thẩm định", "official": "Cán bộ một cửa",
         "unit": "Bộ phận Một cửa", "step_deadline": None},
    )  # fmt: skip
    if supplement:
        add("SupplementRequested", {"reason": "Bổ sung giấy tờ", "requested_at": t.isoformat()})
        add("DossierSupplemented", {"supplemented_at": t.isoformat()}, minutes=60)
    add("StepCompleted", {"step_no": 1, "content": "Đủ điều kiện"})
    if transfer_to is not None:
        add(
            "DossierTransferred",
            {"from_agency_code": holder, "to_agency_code": transfer_to, "reason": "Liên thông"},
        )
        holder = transfer_to
    if not finish:
        return events
    add("DossierProcessed", {"result_summary": "Đã giải quyết", "electronic_result": True})
    add("ResultReturned", {"returned_at": t.isoformat()})
    if rating is not None:
        add("ServiceRated", {"score": rating, "comment": None})
    return events
