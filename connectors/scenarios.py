"""Lifelike dossier histories as the JSON agency systems send (used by the demo and tests).

Each function returns the events of one dossier in order. Times are Vinh local time
(UTC+7) on working days; event ids are UUIDv5 of the dossier code and the step, so the same
scenario always produces the same ids (replays are recognisable as such).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = ["DEFAULT_STEP", "Clock", "Step", "dossier_code", "dossier_life"]

VN = timezone(timedelta(hours=7))
_NS = uuid.UUID("0b8e3c55-1f7a-5d0e-8c2b-6a4f2e9d7c11")

#: One processing step: (step name, unit, official handling it).
Step = tuple[str, str, str]
#: When the next event happens: given its event type and the previous event's time.
Clock = Callable[[str, datetime], datetime]

DEFAULT_STEP: Step = ("Thẩm định", "Bộ phận Một cửa", "Cán bộ một cửa")
#: Minutes after the previous event when no clock is given.
_DEFAULT_MINUTES = {"DossierSubmitted": 0, "DossierSupplemented": 60}
_PAYLOAD_TIMES = ("submitted_at", "received_at", "requested_at", "supplemented_at", "returned_at")


def dossier_code(agency_code: str, day: datetime, number: int) -> str:
    return f"{agency_code}-{day:%y%m%d}-{number:04d}"


def _default_clock(event_type: str, previous: datetime) -> datetime:
    return previous + timedelta(minutes=_DEFAULT_MINUTES.get(event_type, 30))


def _event(
    code: str,
    agency: str,
    event_type: str,
    at: datetime,
    payload: dict[str, Any],
    n: int,
    source_system: str = "scenario",
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(_NS, f"{code}|{n}|{event_type}")),
        "event_type": event_type,
        "occurred_at": at.isoformat(),
        "source_system": source_system,
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
    steps: Sequence[Step] | None = None,
    clock: Clock | None = None,
    appointment_date: date | None = None,
    complaint: str | None = None,
    electronic_result: bool = True,
    source_system: str = "scenario",
) -> list[dict[str, Any]]:
    """Submitted, received, steps (optionally a supplement round and a transfer), processed,
    returned, rated. ``finish=False`` leaves it in processing.

    Options beyond the plain life (defaults keep it as it always was):

    * ``steps``: the processing steps, each started and completed in turn (default one
      "Thẩm định" step at the one-stop desk). A supplement round happens inside step 1 and a
      transfer (liên thông) right after step 1; the new holder then emits the later steps.
    * ``clock``: when each event happens, as ``clock(event_type, previous_time)``; the first
      call gets ``start`` as the previous time (default: ``start`` itself, then 30 minutes
      per event, 60 for the supplement).
    * ``appointment_date``: the appointment date (NgayHenTra) sent with the receipt (default
      none: the hub computes it from the procedure).
    * ``complaint``: subject of a complaint filed last (after the rating if any), also for an
      unfinished dossier.
    """
    tick = clock or _default_clock
    t = start.astimezone(VN)
    events: list[dict[str, Any]] = []

    def add(event_type: str, payload: dict[str, Any]) -> None:
        nonlocal t
        previous, t = t, tick(event_type, t).astimezone(VN)
        # Payload times: the event's own time with a clock; without one, the previous
        # event's time (as this function always did, so existing ids and times stay put).
        stamp = (t if clock is not None else previous).isoformat()
        for key in _PAYLOAD_TIMES:
            if key in payload:
                payload[key] = stamp
        events.append(_event(code, holder, event_type, t, payload, len(events), source_system))

    holder = agency
    add(
        "DossierSubmitted",
        {
            "procedure_code": procedure_code,
            "channel": channel,
            "applicant_name": applicant,
            "applicant_id_number": None,
            "submitted_at": None,
        },
    )
    add(
        "DossierReceived",
        {
            "received_at": None,
            "appointment_date": appointment_date.isoformat() if appointment_date else None,
        },
    )
    for step_no, (step_name, unit, official) in enumerate(steps or [DEFAULT_STEP], start=1):
        add(
            "StepStarted",
            {"step_no": step_no, "step_name": step_name, "official": official, "unit": unit,
             "step_deadline": None},
        )  # fmt: skip
        if supplement and step_no == 1:
            add("SupplementRequested", {"reason": "Bổ sung giấy tờ", "requested_at": None})
            add("DossierSupplemented", {"supplemented_at": None})
        add("StepCompleted", {"step_no": step_no, "content": "Đủ điều kiện"})
        if transfer_to is not None and step_no == 1:
            add(
                "DossierTransferred",
                {"from_agency_code": holder, "to_agency_code": transfer_to, "reason": "Liên thông"},
            )
            holder = transfer_to
    if finish:
        add(
            "DossierProcessed",
            {"result_summary": "Đã giải quyết", "electronic_result": electronic_result},
        )
        add("ResultReturned", {"returned_at": None})
        if rating is not None:
            add("ServiceRated", {"score": rating, "comment": None})
    if complaint is not None:
        add(
            "ComplaintFiled",
            {"subject": complaint, "content": "Công dân phản ánh về việc giải quyết hồ sơ"},
        )
    return events
