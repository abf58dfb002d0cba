"""The province's view on two real workers: access by role, one answer from either worker,
and the web page in a real browser.

Two workers of one app split the partitions; dossiers of two agencies (some overdue, some
finished late by a slow step, one transferred between them) go through them. Then:

* each role sees exactly what it may, over the JSON API: no key 401, outside the role 403,
  a bad parameter 400 naming it, an unknown code 404; no answer to a role without the
  right carries an applicant's name;
* either worker's overdue list, search and province summary equal the sum of the two
  workers' own parts (each asked for its own partitions only);
* headless Chromium (Debian's, driven by playwright) signs in as the province office and as
  the Department of Justice, opens the three pages, sees what each may see, and saves
  screenshots in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.scenarios import VN, dossier_code, dossier_life
from hub.worker.api import FORWARDED
from hub.worker.province import merge_province, merge_rows
from tests.fixtures.stack import Broker
from tests.fixtures.worker import KEYS, Worker, start_worker, wait_for
from tests.integration.test_worker_guarantees import publish

pytestmark = pytest.mark.broker

JUSTICE = "000.00.03.H40"  # Sở Tư pháp
HEALTH = "000.00.09.H40"  # Sở Y tế
CRIMINAL_RECORD = "2.000488"  # 10 working days
CERTIFY = "2.000815"  # 1 working day
NAMES = ("Hoàng Thị Mơ", "Phan Văn Khải", "Đinh Thị Lụa", "Vi Văn Sáng")


def slow(kind: str, previous: datetime) -> datetime:
    """Three days between events: steps overrun their deadlines."""
    return previous + timedelta(days=3)


@dataclass
class Province:
    workers: tuple[Worker, Worker]
    justice: list[str]  # dossier codes held only by Justice
    health: list[str]  # held only by Health
    transferred: str  # Justice -> Health
    overdue: set[str]


@pytest.fixture(scope="module")
def province(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"w{tag}.", f"hub-web-{tag}"
    base = tmp_path_factory.mktemp("province")
    start = datetime.now(VN) - timedelta(days=40)
    events: list[dict[str, Any]] = []
    justice, health, overdue = [], [], set()
    for n in range(1, 9):
        code = dossier_code(JUSTICE, start, n)
        finish = n % 3 != 0
        events += dossier_life(
            code, JUSTICE, CRIMINAL_RECORD, start + timedelta(hours=n),
            applicant=NAMES[n % len(NAMES)], finish=finish, rating=4 if n % 2 else None,
            clock=slow if n % 4 == 0 else None, channel=2 if n % 2 else 1,
        )  # fmt: skip
        justice.append(code)
        if not finish:
            overdue.add(code)
    for n in range(1, 6):
        code = dossier_code(HEALTH, start, n)
        finish = n % 2 == 0
        events += dossier_life(
            code, HEALTH, CERTIFY, start + timedelta(hours=n), applicant=NAMES[n % len(NAMES)],
            finish=finish, clock=slow if n == 2 else None,
        )  # fmt: skip
        health.append(code)
        if not finish:
            overdue.add(code)
    transferred = dossier_code(JUSTICE, start, 50)
    events += dossier_life(
        transferred, JUSTICE, CRIMINAL_RECORD, start, transfer_to=HEALTH, finish=False,
        applicant="Lò Văn Chiến",
    )  # fmt: skip
    overdue.add(transferred)
    first = start_worker(broker, base / "one", prefix=prefix, app_id=app_id)
    second = start_worker(broker, base / "two", prefix=prefix, app_id=app_id)
    try:
        publish(broker, prefix, events)
        everything = [*justice, *health, transferred]
        for worker in (first, second):
            wait_for(
                lambda w=worker: (
                    w.get("/dossiers?size=500")[1].get("total") == len(everything)
                    and len(w.get("/overdue?size=500")[1].get("items", [])) == len(overdue)
                ),
                180,
                "either worker to answer for every dossier",
            )
        yield Province((first, second), justice, health, transferred, overdue)
    finally:
        first.stop()
        second.stop()


def own_part(worker: Worker, path: str) -> Any:
    """What ``worker`` holds itself: the answer it gives another worker."""
    import urllib.request

    request = urllib.request.Request(
        f"{worker.url}{path}",
        headers={"Authorization": f"Bearer {KEYS['province-masked']}", FORWARDED: "1"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def settled(province: Province, asked: Worker, path: str) -> tuple[Any, list[Any]]:
    """``asked``'s province-wide answer and each worker's own part, taken while neither
    part changed (the deadline clock and late ratings still move the figures a little after
    the events are in: parts read before and after the answer must agree)."""
    deadline = time.monotonic() + 60
    while True:
        before = [own_part(w, path) for w in province.workers]
        status, whole = asked.get(path)
        after = [own_part(w, path) for w in province.workers]
        assert status == 200, whole
        if before == after or time.monotonic() > deadline:
            return whole, after
        time.sleep(1)


def test_either_worker_answers_for_the_province_with_the_sum_of_both_parts(
    province: Province,
) -> None:
    first, second = province.workers
    for worker in province.workers:
        summary, parts = settled(province, worker, "/province/summary")
        assert all(part["agencies"] for part in parts), "each worker holds some dossiers"
        assert {k: v for k, v in summary.items() if k != "scope"} == merge_province(parts)
        assert summary["province"]["counts"]["submitted_total"] == 14
        overdue, parts = settled(province, worker, "/overdue?size=500")
        assert overdue == merge_rows(parts, 1, 500)
        assert {item["dossier_code"] for item in overdue["items"]} == province.overdue
        found, parts = settled(province, worker, "/dossiers?size=500")
        assert found == merge_rows(parts, 1, 500, newest_first=True)
    # paging over the merged order: page 2 of 3 is the 4th to 6th of the whole list
    _, whole = first.get("/overdue?size=500")
    _, page = second.get("/overdue?page=2&size=3")
    assert page["items"] == whole["items"][3:6]
    _, late = first.get("/province/summary")
    units = late["agencies"][JUSTICE]["late_steps_by_unit"]
    assert sum(units.values()) >= 1, "the slow dossiers' steps finished late"


def test_each_role_sees_exactly_what_it_may(province: Province) -> None:
    worker = province.workers[0]
    justice_only, health_only = province.justice[0], province.health[0]
    # no key, an unknown key: 401 everywhere but the probes
    for path in (f"/dossiers/{justice_only}", "/overdue", "/dossiers", "/province/summary",
                 f"/agencies/{JUSTICE}/summary", "/metrics"):  # fmt: skip
        status, body = worker.get(path, key=None)
        assert status == 401, (path, body)
    assert worker.get("/health", key=None)[0] == 200
    assert worker.get("/ready", key=None)[0] == 200

    # an agency: the dossiers it holds or held, its own figures and overdue list
    as_justice = "agency:" + JUSTICE
    status, mine = worker.get(f"/dossiers/{justice_only}", key=as_justice)
    assert status == 200 and mine["applicant_name"] in NAMES  # its own applicants' names
    status, held = worker.get(f"/dossiers/{province.transferred}", key=as_justice)
    assert (status, held["agency_code"]) == (200, HEALTH)  # transferred away: held before
    status, body = worker.get(f"/dossiers/{health_only}", key=as_justice)
    assert status == 403 and JUSTICE in body["error"], body
    assert worker.get(f"/agencies/{HEALTH}/summary", key=as_justice)[0] == 403
    assert worker.get(f"/agencies/{JUSTICE}/summary", key=as_justice)[0] == 200
    assert worker.get(f"/overdue?agency={HEALTH}", key=as_justice)[0] == 403
    _, listed = worker.get("/overdue?size=500", key=as_justice)
    assert {i["agency_code"] for i in listed["items"]} == {JUSTICE}
    _, found = worker.get("/dossiers?size=500", key=as_justice)
    assert {i["dossier_code"] for i in found["items"]} == {*province.justice, province.transferred}
    _, summary = worker.get("/province/summary", key=as_justice)
    assert set(summary["agencies"]) == {JUSTICE} and summary["scope"] == JUSTICE
    _, health_view = worker.get("/dossiers?size=500", key="agency:" + HEALTH)
    assert {i["dossier_code"] for i in health_view["items"]} == {
        *province.health,
        province.transferred,
    }

    # figures only: summaries and metrics, no dossier, no list of dossiers
    for path in (f"/dossiers/{justice_only}", "/overdue", "/dossiers?code=000"):
        status, body = worker.get(path, key="figures")
        assert status == 403 and "figures" in body["error"], (path, body)
    for path in ("/province/summary", f"/agencies/{HEALTH}/summary", "/metrics"):
        assert worker.get(path, key="figures")[0] == 200, path

    # unknown codes are 404, for a role that could see them
    assert worker.get("/dossiers/000.00.03.H40-000101-9999")[0] == 404
    assert worker.get("/agencies/000.00.99.H40/summary")[0] == 404


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/overdue?page=abc", "page"), ("/overdue?size=0", "size"),
        ("/overdue?agency=H40.NOPE", "agency"), ("/overdue?procedure=9.999999", "procedure"),
        ("/overdue?channel=FAX", "channel"), ("/overdue?deadline_from=2026-02-30", "deadline_from"),
        ("/overdue?deadline_from=2026-12-02&deadline_to=2026-12-01", "deadline_to"),
        ("/dossiers?code=%27%20OR%201%3D1", "code"), ("/dossiers?status=DONE", "status"),
        ("/dossiers?received_to=tomorrow", "received_to"), ("/dossiers?page=-1", "page"),
        ("/dossiers?agency=x", "agency"),
    ],
)  # fmt: skip
def test_every_bad_parameter_is_a_400_naming_it(
    province: Province, path: str, parameter: str
) -> None:
    status, body = province.workers[1].get(path)
    assert (status, body.get("parameter")) == (400, parameter), body
    assert body["error"].startswith(f"{parameter}: ")


def test_no_answer_to_a_role_without_the_right_carries_a_name(province: Province) -> None:
    names = (*NAMES, "Lò Văn Chiến")
    paths = [f"/dossiers/{code}" for code in (*province.justice, *province.health)]
    paths += ["/overdue?size=500", "/dossiers?size=500", "/province/summary"]
    for key in ("province-masked", "figures"):
        for path in paths:
            _, body = province.workers[0].get(path, key=key)
            text = json.dumps(body, ensure_ascii=False)
            assert not any(name in text for name in names), (key, path)


CHROMIUM_ARGS = [
    # as root in a container; no GPU; and nothing that reaches for the network on its own
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic",
]  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not on PATH: scripts/test.sh installs Debian's chromium package "
            "(as root); or run `apt-get install chromium`",
            pytrace=False,
        )
    return found


def test_officials_use_the_web_page_in_a_real_browser(province: Province, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    worker = province.workers[1]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            # --- the province office ------------------------------------------------------
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.goto(f"{worker.url}/ui")
            assert page.locator("input[name=key]").is_visible()  # 401: the sign-in form
            page.fill("input[name=key]", "not a key at all")
            page.click("form.login button")
            assert page.get_by_text("Khóa truy cập không đúng.").is_visible()
            page.fill("input[name=key]", KEYS["province"])
            page.click("form.login button")
            page.wait_for_url("**/ui")
            assert page.locator("html").get_attribute("lang") == "vi"
            rows = page.locator("#agencies tbody tr")
            assert rows.count() == 2
            assert {rows.nth(i).get_attribute("data-agency") for i in range(2)} == {JUSTICE, HEALTH}
            assert page.get_by_text("Tỷ lệ đúng hạn").first.is_visible()
            assert page.locator(".who").get_attribute("data-role") == "province"
            # sorting by the overdue column puts the agency with more overdue dossiers last
            page.locator("#agencies thead th").nth(3).click()
            values = [
                int(v) for v in page.locator("#agencies tbody tr td:nth-child(4)").all_inner_texts()
            ]
            assert values == sorted(values)
            page.screenshot(path=str(shots / "1-province-overview-vi.png"), full_page=True)

            page.goto(f"{worker.url}/ui/overdue")
            listed = page.locator("#overdue tbody tr")
            assert listed.count() == len(province.overdue)
            page.screenshot(path=str(shots / "2-province-overdue-vi.png"), full_page=True)
            page.locator(f'#overdue a[href="/ui/dossiers/{province.transferred}"]').click()
            page.wait_for_url(f"**/ui/dossiers/{province.transferred}")
            assert page.get_by_text("Lò Văn Chiến").is_visible()  # the province sees names
            assert page.locator("#steps tbody tr").count() >= 1
            page.screenshot(path=str(shots / "3-province-dossier-vi.png"), full_page=True)

            # English on request, remembered
            page.goto(f"{worker.url}/ui?lang=en")
            assert page.locator("html").get_attribute("lang") == "en"
            page.goto(f"{worker.url}/ui/overdue")
            assert page.locator("h1").inner_text() == "Overdue dossiers"
            page.screenshot(path=str(shots / "4-province-overdue-en.png"), full_page=True)

            # a slow step is marked on its dossier's page, with its unit and official
            slow_code = province.justice[3]  # n == 4: the slow clock
            page.goto(f"{worker.url}/ui/dossiers/{slow_code}")
            assert page.locator("#steps tr.late-row").count() >= 1
            page.screenshot(path=str(shots / "5-late-step-en.png"), full_page=True)

            # --- the Department of Justice -----------------------------------------------
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.goto(f"{worker.url}/ui/login")
            page.fill("input[name=key]", KEYS["agency:" + JUSTICE])
            page.click("form.login button")
            page.wait_for_url("**/ui")
            rows = page.locator("#agencies tbody tr")
            assert rows.count() == 1 and rows.first.get_attribute("data-agency") == JUSTICE
            page.screenshot(path=str(shots / "6-justice-overview-vi.png"), full_page=True)
            page.goto(f"{worker.url}/ui/overdue")
            codes = set(page.locator("#overdue tbody tr td:first-child").all_inner_texts())
            # its overdue list: what it holds now (the transferred dossier is Health's now)
            assert codes == province.overdue & set(province.justice)
            response = page.goto(f"{worker.url}/ui/dossiers/{province.health[0]}")
            assert response is not None and response.status == 403
            assert page.locator("h1").inner_text() == "Không có quyền xem nội dung này"
            page.screenshot(path=str(shots / "7-justice-forbidden-vi.png"), full_page=True)
            justice_page = page

            # --- a province key without the right to names: no page shows one ---------------
            page = browser.new_context().new_page()
            page.goto(f"{worker.url}/ui/login")
            page.fill("input[name=key]", KEYS["province-masked"])
            page.click("form.login button")
            page.wait_for_url("**/ui")
            shown = (*province.justice[:3], province.transferred)
            pages = ["/ui", "/ui/overdue", "/ui/search?code=000"]
            for path in [*pages, *(f"/ui/dossiers/{code}" for code in shown)]:
                page.goto(f"{worker.url}{path}")
                html = page.content()
                assert not any(name in html for name in (*NAMES, "Lò Văn Chiến")), path
            assert (
                page.get_by_text("masked for your role").count()
                + page.get_by_text("đã che theo quyền truy cập").count()
                == 1
            )

            # the page refreshes itself: a new overdue dossier appears without a reload
            page = justice_page
            page.goto(f"{worker.url}/ui")
            stamp = page.locator("#updated").inner_text()
            deadline = time.monotonic() + 25
            while page.locator("#updated").inner_text() == stamp:
                assert time.monotonic() < deadline, "the page did not refresh itself in 25s"
                page.wait_for_timeout(500)
            assert page.locator("#agencies tbody tr").count() == 1  # swapped in, still scoped
        finally:
            browser.close()
    saved = sorted(p.name for p in shots.iterdir())
    assert len(saved) == 7, saved
    assert all((shots / name).stat().st_size > 10_000 for name in saved)
    print(f"screenshots: {shots}")
    keep = os.environ.get("HUB_SCREENSHOTS_TO")  # README's pictures: copy them out
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
