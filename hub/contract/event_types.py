"""The vocabulary of events the hub carries.

One name per concept; the Vietnamese term is given where agencies' staff know it by that name.
The string values are what travels on the wire (the ``event_type`` envelope field and the
``event-type`` Kafka header), so they never change once published.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["FEEDBACK_EVENT_TYPES", "DossierEventType", "FeedbackEventType", "HubOutputType"]


class DossierEventType(StrEnum):
    """A step in the life of a dossier (hồ sơ thủ tục hành chính), on ``dossier.events``."""

    SUBMITTED = "DossierSubmitted"  # nộp hồ sơ
    RECEIVED = "DossierReceived"  # tiếp nhận, with the appointment date (NgayHenTra)
    REFUSED = "DossierRefused"  # không tiếp nhận / từ chối
    SUPPLEMENT_REQUESTED = "SupplementRequested"  # yêu cầu bổ sung: the clock stops
    SUPPLEMENTED = "DossierSupplemented"  # công dân bổ sung: the clock resumes
    FINANCIAL_OBLIGATION_REQUESTED = "FinancialObligationRequested"  # nghĩa vụ tài chính
    FINANCIAL_OBLIGATION_PAID = "FinancialObligationPaid"
    STEP_STARTED = "StepStarted"  # bước xử lý bắt đầu (NguoiXuLy, PhongBanXuLy)
    STEP_COMPLETED = "StepCompleted"
    TRANSFERRED = "DossierTransferred"  # chuyển liên thông to another agency
    PROCESSED = "DossierProcessed"  # đã xử lý xong, result ready
    RESULT_RETURNED = "ResultReturned"  # đã trả kết quả
    STOPPED = "ProcessingStopped"  # dừng xử lý
    WITHDRAWN = "DossierWithdrawn"  # rút hồ sơ theo yêu cầu
    APOLOGY_ISSUED = "ApologyIssued"  # phiếu xin lỗi và hẹn lại ngày trả kết quả


class FeedbackEventType(StrEnum):
    """Citizen feedback on a dossier, on ``feedback.events``."""

    RATING = "ServiceRated"  # đánh giá mức độ hài lòng
    COMPLAINT = "ComplaintFiled"  # phản ánh, kiến nghị


#: the event types that go to ``feedback.events`` (the others to ``dossier.events``); a plain
#: string is found in it too
FEEDBACK_EVENT_TYPES: Final = frozenset(str(t) for t in FeedbackEventType)


class HubOutputType(StrEnum):
    """Records the hub itself produces."""

    STATUS_CHANGED = "DossierStatusChanged"  # on dossier.status and portal.outbox
    ALERT = "DossierAlert"  # on dossier.alerts
