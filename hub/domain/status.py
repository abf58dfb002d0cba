"""The dossier's status in the hub, and what counts as finished.

The national portal's numeric codes (TrangThaiHoSo) come from secondary sources, so the
numbers live in reference data (``portal_status.json``), not here.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FINISHED_STATUSES", "TERMINAL_STATUSES", "DossierStatus"]


class DossierStatus(StrEnum):
    NEW = "NEW"  # mới đăng ký / nộp
    RECEIVED = "RECEIVED"  # đã tiếp nhận
    NOT_RECEIVED = "NOT_RECEIVED"  # không tiếp nhận (từ chối)
    PROCESSING = "PROCESSING"  # đang xử lý
    SUPPLEMENT_REQUESTED = "SUPPLEMENT_REQUESTED"  # yêu cầu bổ sung
    FINANCIAL_OBLIGATION_REQUESTED = "FINANCIAL_OBLIGATION_REQUESTED"  # nghĩa vụ tài chính
    WITHDRAWN = "WITHDRAWN"  # rút theo yêu cầu
    STOPPED = "STOPPED"  # dừng xử lý
    PROCESSED = "PROCESSED"  # đã xử lý xong
    RESULT_RETURNED = "RESULT_RETURNED"  # đã trả kết quả


TERMINAL_STATUSES: frozenset[DossierStatus] = frozenset(
    {
        DossierStatus.NOT_RECEIVED,
        DossierStatus.WITHDRAWN,
        DossierStatus.STOPPED,
        DossierStatus.RESULT_RETURNED,
    }
)

#: a dossier in one of these is finished: the terminal ones, and PROCESSED (the result is
#: ready; handing it over is the applicant's step, not the agency's)
FINISHED_STATUSES: frozenset[DossierStatus] = TERMINAL_STATUSES | {DossierStatus.PROCESSED}
