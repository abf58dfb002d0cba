"""The web pages as functions of the answers they show: escaped, in the chosen language,
colour only where it carries meaning, and nothing a role may not see."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.access.roles import Principal, Role
from hub.domain.supervision import Figures
from hub.web.pages import Names, dossier_page, list_page, login_page, overview_page
from hub.worker.province import province_json

JUSTICE, HEALTH = "000.00.03.H40", "000.00.04.H40"
NOW = datetime(2026, 12, 6, 16, 30, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
NAMES = Names(
    {JUSTICE: "Sở Tư pháp", HEALTH: "Sở <Y tế>"},
    {"1.001193": "Đăng ký khai sinh"},
    {"PROCESSING": ("Đang xử lý", "Processing")},
)
PROVINCE = Principal("so-noi-vu", Role.PROVINCE, None, True)
FIGURES = Principal("cong-quoc-gia", Role.FIGURES)
MASKED = Principal("tu-phap", Role.AGENCY, JUSTICE, False)


def summary() -> dict[str, Any]:
    return province_json(
        {
            JUSTICE: Figures(submitted_total=10, online=5, finished_on_time=9, finished_late=1),
            HEALTH: Figures(submitted_total=4, overdue=2, finished_on_time=1, finished_late=1),
        },
        {HEALTH: {"Phòng <Nghiệp vụ>": 3}},
        {HEALTH: {"2026-11-30": [1, 1]}},
    )


def test_the_overview_lists_every_agency_escaped_with_red_only_where_it_means_something() -> None:
    page = overview_page(summary(), NAMES, "vi", PROVINCE, NOW)
    assert '<html lang="vi">' in page and "Tỷ lệ đúng hạn" in page
    assert "Sở &lt;Y tế&gt;" in page and "Sở <Y tế>" not in page
    assert "Phòng &lt;Nghiệp vụ&gt;" in page
    justice = page.split(f'data-agency="{JUSTICE}"')[1].split("</tr>")[0]
    health = page.split(f'data-agency="{HEALTH}"')[1].split("</tr>")[0]
    assert 'class="n bad"' not in justice  # 90% on time, nothing overdue: no colour
    assert health.count('class="n bad"') == 2  # 2 overdue, 50% on time
    assert "50%" in health and "(1/2)" in health  # the week's rate in the trend's title
    assert f'href="/ui/overdue?agency={JUSTICE}"' in page


def test_a_figures_key_sees_no_link_to_any_dossier() -> None:
    page = overview_page(summary(), NAMES, "en", FIGURES, NOW)
    assert '<html lang="en">' in page and "On time" in page
    assert "/ui/overdue" not in page and "/ui/search" not in page


def test_the_dossier_page_marks_the_late_step_and_says_a_name_is_masked() -> None:
    step = {"no": 1, "name": "Thẩm định", "unit": "Phòng A", "official": "Trần Thị B"}
    dossier = {
        "dossier_code": "D-1", "status": "PROCESSING", "channel": "ONLINE",
        "procedure_code": "1.001193", "agency_code": JUSTICE, "applicant_name": "N***** V** A*",
        "steps": [{**step, "deadline": "2026-11-03", "completed_at": "2026-11-05T02:00:00+00:00"}],
        "current_step": {**step, "no": 2, "name": "Ký <duyệt>", "deadline": "2026-11-10"},
        "late_steps": [{**step, "agency_code": JUSTICE, "deadline": "2026-11-03",
                        "completed_on": "2026-11-05", "working_days_over": 2}],
        "made_late_by": {**step, "working_days_over": 2},
        "timeline": [["e1", "DossierSubmitted", "2026-11-02T02:00:00+00:00", JUSTICE, "NEW", ""]],
    }  # fmt: skip
    page = dossier_page(dossier, NAMES, "vi", MASKED, NOW)
    assert "N***** V** A*" in page and "đã che theo quyền truy cập" in page
    first = page.split('data-step="1"')[1].split("</tr>")[0]
    second = page.split('data-step="2"')[1].split("</tr>")[0]
    assert "Làm hồ sơ trễ hạn" in first and '<span class="bad">2</span>' in first
    assert "bad" not in second and "đang xử lý" in second and "Ký &lt;duyệt&gt;" in second


def test_a_list_keeps_its_filters_in_the_pager_and_links_each_dossier() -> None:
    listing = {
        "total": 120, "page": 2, "size": 50,
        "items": [{"dossier_code": "D-<1>", "agency_code": JUSTICE, "deadline": "2026-12-01",
                   "procedure_code": "1.001193", "channel": "ONLINE"}],
    }  # fmt: skip
    page = list_page("overdue", listing, {"agency": JUSTICE}, NAMES, "vi", PROVINCE, NOW)
    assert 'href="/ui/dossiers/D-&lt;1&gt;"' in page
    assert f'href="/ui/overdue?agency={JUSTICE}&amp;page=1"' in page
    assert "Trang 2/3" in page
    assert '<span class="bad">5</span>' in page  # 5 days past 2026-12-01 on 2026-12-06


def test_the_sign_in_page_does_not_refresh_itself() -> None:
    page = login_page("vi", NOW, failed=True)
    assert "Khóa truy cập không đúng." in page
    assert '<main id="content">' in page  # no data-refresh attribute: the form stays put
    assert 'type="password"' in page
