"""The web page's words, in Vietnamese (the default) and English. One place for each label;
status names come from the reference data's portal labels (``hub.reference``)."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["LANGUAGES", "Lang", "word"]

Lang = Literal["vi", "en"]
LANGUAGES: Final[tuple[Lang, ...]] = ("vi", "en")

_WORDS: Final[dict[str, tuple[str, str]]] = {
    "hub": ("Hệ thống điều phối hồ sơ tỉnh Nghệ An", "Nghệ An dossier hub"),
    "province": ("Toàn tỉnh", "Province"),
    "overview": ("Toàn tỉnh", "Province at a glance"),
    "overdue": ("Hồ sơ quá hạn", "Overdue dossiers"),
    "search": ("Tra cứu", "Search"),
    "dossier": ("Hồ sơ", "Dossier"),
    "dossier_code": ("Mã hồ sơ", "Dossier code"),
    "agency": ("Cơ quan", "Agency"),
    "all_agencies": ("Tất cả cơ quan", "All agencies"),
    "procedure": ("Thủ tục", "Procedure"),
    "all_procedures": ("Tất cả thủ tục", "All procedures"),
    "channel": ("Kênh nộp", "Channel"),
    "all_channels": ("Tất cả kênh", "All channels"),
    "IN_PERSON": ("Trực tiếp", "In person"),
    "ONLINE": ("Trực tuyến", "Online"),
    "POSTAL": ("Bưu chính", "Postal"),
    "status": ("Trạng thái", "Status"),
    "all_statuses": ("Tất cả trạng thái", "All statuses"),
    "deadline": ("Hạn trả kết quả", "Deadline"),
    "deadline_from": ("Hạn từ ngày", "Deadline from"),
    "deadline_to": ("đến ngày", "to"),
    "received_from": ("Tiếp nhận từ ngày", "Received from"),
    "received_to": ("đến ngày", "to"),
    "days_overdue": ("Số ngày quá hạn", "Days overdue"),
    "filter": ("Lọc", "Filter"),
    "find": ("Tìm", "Find"),
    "submitted": ("Tiếp nhận", "Submitted"),
    "in_progress": ("Đang xử lý", "In progress"),
    "on_time_rate": ("Tỷ lệ đúng hạn", "On time"),
    "online_share": ("Tỷ lệ trực tuyến", "Online share"),
    "satisfaction": ("Mức hài lòng", "Satisfaction"),
    "trend": ("Đúng hạn theo tuần", "On time by week"),
    "late_steps": ("Bước xử lý trễ hạn", "Steps finished late"),
    "unit": ("Đơn vị", "Unit"),
    "count": ("Số lượt", "Count"),
    "total": ("Tổng", "Total"),
    "page": ("Trang", "Page"),
    "previous": ("Trang trước", "Previous"),
    "next": ("Trang sau", "Next"),
    "none": ("Không có", "None"),
    "applicant": ("Người nộp", "Applicant"),
    "received": ("Ngày tiếp nhận", "Received"),
    "appointment": ("Ngày hẹn trả", "Appointment date"),
    "original_appointment": ("Ngày hẹn ban đầu", "Original appointment"),
    "effective_deadline": ("Hạn hiệu lực", "Effective deadline"),
    "supplements": ("Yêu cầu bổ sung", "Supplement requests"),
    "paused_days": ("Ngày làm việc tạm dừng", "Working days paused"),
    "paused_since": ("Đang tạm dừng từ", "Paused since"),
    "steps": ("Các bước xử lý", "Processing steps"),
    "step": ("Bước", "Step"),
    "step_name": ("Nội dung", "Step"),
    "official": ("Người xử lý", "Official"),
    "step_deadline": ("Hạn bước", "Step deadline"),
    "completed": ("Hoàn thành", "Completed"),
    "late_by": ("Trễ (ngày làm việc)", "Late (working days)"),
    "in_hand": ("đang xử lý", "in hand"),
    "made_late_by": ("Làm hồ sơ trễ hạn", "Made the dossier late"),
    "timeline": ("Diễn biến", "Timeline"),
    "when": ("Thời điểm", "When"),
    "event": ("Sự kiện", "Event"),
    "note": ("Ghi chú", "Note"),
    "updated": ("Cập nhật lúc", "Updated at"),
    "sign_in": ("Đăng nhập", "Sign in"),
    "sign_out": ("Đăng xuất", "Sign out"),
    "api_key": ("Khóa truy cập", "Access key"),
    "sign_in_help": (
        "Nhập khóa truy cập do Văn phòng UBND tỉnh cấp.",
        "Enter the access key the provincial office gave you.",
    ),
    "bad_key": ("Khóa truy cập không đúng.", "That key is not valid."),
    "forbidden": ("Không có quyền xem nội dung này", "You may not see this"),
    "not_found": ("Không tìm thấy", "Not found"),
    "unavailable": ("Tạm thời chưa trả lời được", "Not available right now"),
    "bad_request": ("Tham số không hợp lệ", "A parameter is not valid"),
    "legend": (
        "Màu đỏ: có hồ sơ quá hạn hoặc tỷ lệ đúng hạn dưới 90%.",
        "Red: overdue dossiers, or fewer than 90% on time.",
    ),
    "masked": ("đã che theo quyền truy cập", "masked for your role"),
    "role_province": ("toàn tỉnh", "province"),
    "role_agency": ("cơ quan", "agency"),
    "role_figures": ("chỉ số liệu", "figures only"),
    "other_language": ("English", "Tiếng Việt"),
    "no_rows": ("Không có hồ sơ nào.", "No dossiers."),
}


def word(key: str, lang: Lang) -> str:
    vi, en = _WORDS[key]
    return vi if lang == "vi" else en
