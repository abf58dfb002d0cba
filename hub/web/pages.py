"""The web page officials open instead of reading JSON: server-rendered HTML from the API's
own answers (``hub.worker.api``), with a little JavaScript of our own (sorting, refreshing)
and no build step, CDN or external file.

Pure: each page is a function of the answer it shows, the language and who is signed in;
``hub.worker.app`` serves them under ``/ui``. Every value from data is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from hub.access.roles import Principal
from hub.web.i18n import Lang, word

__all__ = [
    "Names",
    "dossier_page",
    "error_page",
    "list_page",
    "login_page",
    "overview_page",
]

#: an on-time rate under this is shown in red (the province's 90% target of Decision 766's
#: scoring is the usual line; the legend on the page says so)
ON_TIME_TARGET = 0.9
REFRESH_S = 10


@dataclass(frozen=True)
class Names:
    """Display names from the reference data: agencies, procedures, statuses (vi, en)."""

    agencies: Mapping[str, str]
    procedures: Mapping[str, str]
    statuses: Mapping[str, tuple[str, str]]

    def agency(self, code: str | None) -> str:
        return self.agencies.get(code or "", code or "")

    def procedure(self, code: str | None) -> str:
        return self.procedures.get(code or "", code or "")

    def status(self, code: str, lang: Lang) -> str:
        labels = self.statuses.get(code)
        if labels is None:
            return code
        return labels[0] if lang == "vi" else labels[1]


def _e(value: object) -> str:
    return escape("" if value is None else str(value))


_CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"Noto Sans",sans-serif;color:#1d2733;background:#f5f6f8}
header{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;padding:.6rem 1.2rem;
background:#fff;border-bottom:1px solid #d9dde3}
header strong{font-size:1.05rem}header nav{display:flex;gap:1rem;flex-wrap:wrap}
header .who{margin-left:auto;color:#56606b}a{color:#0b4f9c}
main{padding:1rem 1.2rem;max-width:1400px}h1{font-size:1.35rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1rem}
th,td{padding:.35rem .6rem;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600;white-space:nowrap}
table.sortable th{cursor:pointer}table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b3261e;font-weight:600}.late-row{background:#fdecea}
tfoot td{font-weight:600;background:#f0f2f5}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin-bottom:1rem}
form.filters label{display:flex;flex-direction:column;font-size:.85rem;color:#56606b}
input,select,button{font:inherit;padding:.25rem .4rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;background:#fff;
padding:.8rem 1rem;margin:0 0 1rem}dt{color:#56606b}dd{margin:0}
.pager{display:flex;gap:1rem;align-items:center}.muted{color:#56606b}
footer{padding:.5rem 1.2rem;color:#56606b;font-size:.85rem}
svg.spark{vertical-align:middle}.login{max-width:26rem;margin:3rem auto;background:#fff;
padding:1.5rem;border:1px solid #d9dde3}.login input{width:100%;margin:.4rem 0 1rem}
.error{color:#b3261e}
"""

# Sorting: a click on a header sorts by that column (again: the other way), remembered per
# page in sessionStorage so a refresh keeps it. Refreshing: every REFRESH_S seconds the page
# fetches itself and swaps <main> in place (no reload, no lost scroll or filters).
_JS = """
(function(){
function key(t){return location.pathname+'#'+t.id}
function value(c){var v=c.getAttribute('data-v');return v===null?c.textContent.trim():v}
function apply(t){var s=JSON.parse(sessionStorage.getItem(key(t))||'null');if(!s)return;
var i=s[0],up=s[1]==='asc',b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
rows.sort(function(a,c){var x=value(a.cells[i]),y=value(c.cells[i]),nx=parseFloat(x),
ny=parseFloat(y),d=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y,'vi');return up?d:-d});
rows.forEach(function(r){b.appendChild(r)});
t.querySelectorAll('thead th').forEach(function(h,j){h.setAttribute('aria-sort',
j===i?(up?'ascending':'descending'):'none')})}
function wire(){document.querySelectorAll('table.sortable').forEach(function(t){
t.querySelectorAll('thead th').forEach(function(h,i){h.onclick=function(){
var s=JSON.parse(sessionStorage.getItem(key(t))||'null');
sessionStorage.setItem(key(t),JSON.stringify([i,s&&s[0]===i&&s[1]==='asc'?'desc':'asc']));
apply(t)}});apply(t)})}
function refresh(){fetch(location.href,{credentials:'same-origin'}).then(function(r){
if(!r.ok)return null;return r.text()}).then(function(html){if(!html)return;
var d=new DOMParser().parseFromString(html,'text/html'),m=d.getElementById('content');
if(!m)return;document.getElementById('content').replaceWith(m);
document.getElementById('updated').textContent=d.getElementById('updated').textContent;
wire()}).catch(function(){})}
wire();var m=document.getElementById('content');
if(m&&m.getAttribute('data-refresh'))setInterval(refresh,1000*m.getAttribute('data-refresh'));
})();
"""


def _layout(
    title: str,
    body: str,
    lang: Lang,
    principal: Principal | None,
    now: datetime,
    *,
    refresh: bool = True,
) -> str:
    other = "en" if lang == "vi" else "vi"
    nav = ""
    who = ""
    if principal is not None:
        links = [f'<a href="/ui">{word("overview", lang)}</a>']
        if principal.lists_dossiers:
            links.append(f'<a href="/ui/overdue">{word("overdue", lang)}</a>')
            links.append(
                '<form action="/ui/search" method="get" role="search">'
                f'<input name="code" aria-label="{word("dossier_code", lang)}" '
                f'placeholder="{word("dossier_code", lang)}" size="22"> '
                f"<button>{word('find', lang)}</button></form>"
            )
        nav = f"<nav>{''.join(links)}</nav>"
        role = word(f"role_{principal.role.value}", lang)
        scope = f" · {_e(principal.agency_code)}" if principal.agency_code else ""
        who = (
            f'<span class="who" data-role="{principal.role.value}">{_e(principal.key_id)} '
            f"({role}{scope})</span>"
            f'<a href="/ui/logout">{word("sign_out", lang)}</a>'
        )
    attributes = f' data-refresh="{REFRESH_S}"' if refresh else ""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)} · {word('hub', lang)}</title><style>{_CSS}</style></head><body>"
        f"<header><strong>{word('hub', lang)}</strong>{nav}{who}"
        f'<a href="?lang={other}" hreflang="{other}">{word("other_language", lang)}</a></header>'
        f'<main id="content"{attributes}><h1>{_e(title)}</h1>{body}</main>'
        f'<footer>{word("updated", lang)} <span id="updated">'
        f"{now.strftime('%H:%M:%S %d/%m/%Y')}</span></footer>"
        f"<script>{_JS}</script></body></html>"
    )


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _sort_value(value: float | None) -> str:
    return "-1" if value is None else f"{value:.6f}"


def _sparkline(weeks: Mapping[str, Sequence[int]], labels: Sequence[str]) -> str:
    """The weekly on-time rate as a small line (no line where a week finished nothing)."""
    width, height, step = 96, 22, 96 / max(1, len(labels) - 1)
    points: list[str] = []
    texts: list[str] = []
    for i, monday in enumerate(labels):
        on_time, late = weeks.get(monday, (0, 0))
        if on_time + late == 0:
            texts.append(f"{monday}: –")
            continue
        rate = on_time / (on_time + late)
        points.append(f"{i * step:.1f},{height - 2 - rate * (height - 4):.1f}")
        texts.append(f"{monday}: {rate * 100:.0f}% ({on_time}/{on_time + late})")
    line = (
        f'<polyline fill="none" stroke="#0b4f9c" stroke-width="1.5" points="{" ".join(points)}"/>'
        if len(points) > 1
        else "".join(
            f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2" fill="#0b4f9c"/>'
            for p in points
        )
    )
    title = _e("; ".join(texts))
    return (
        f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="{title}">'
        f"<title>{title}</title>{line}</svg>"
    )


def _weeks(today: date, count: int) -> list[str]:
    monday = date.fromordinal(today.toordinal() - today.weekday())
    return [
        date.fromordinal(monday.toordinal() - 7 * i).isoformat() for i in reversed(range(count))
    ]


def _figure_cells(figures: Mapping[str, Any]) -> str:
    counts = figures["counts"]
    overdue = int(counts.get("overdue", 0))
    rate = figures.get("on_time_rate")
    rate_class = ' class="n bad"' if rate is not None and rate < ON_TIME_TARGET else ' class="n"'
    overdue_class = ' class="n bad"' if overdue else ' class="n"'
    return (
        f'<td class="n">{int(counts.get("submitted_total", 0))}</td>'
        f'<td class="n">{int(counts.get("in_progress", 0))}</td>'
        f"<td{overdue_class}>{overdue}</td>"
        f'<td{rate_class} data-v="{_sort_value(rate)}">{_percent(rate)}</td>'
        f'<td class="n" data-v="{_sort_value(figures.get("online_share"))}">'
        f"{_percent(figures.get('online_share'))}</td>"
        f'<td class="n" data-v="{_sort_value(figures.get("satisfaction"))}">'
        f"{_percent(figures.get('satisfaction'))}</td>"
    )


def overview_page(
    summary: Mapping[str, Any],
    names: Names,
    lang: Lang,
    principal: Principal,
    now: datetime,
    *,
    weeks: int = 8,
) -> str:
    """The province at a glance: per agency submitted, in progress, overdue, on-time rate,
    online share, satisfaction and the weekly on-time trend; late steps per unit."""
    labels = _weeks(now.date(), weeks)
    heads = (
        f"<th>{word('agency', lang)}</th><th class=n>{word('submitted', lang)}</th>"
        f"<th class=n>{word('in_progress', lang)}</th><th class=n>{word('overdue', lang)}</th>"
        f"<th class=n>{word('on_time_rate', lang)}</th>"
        f"<th class=n>{word('online_share', lang)}</th>"
        f"<th class=n>{word('satisfaction', lang)}</th><th>{word('trend', lang)}</th>"
    )
    rows = []
    late_rows = []
    for code, agency in summary["agencies"].items():
        overdue_link = (
            f'<a href="/ui/overdue?{_e(urlencode({"agency": code}))}">{_e(names.agency(code))}</a>'
            if principal.lists_dossiers
            else _e(names.agency(code))
        )
        rows.append(
            f'<tr data-agency="{_e(code)}"><td>{overdue_link}</td>{_figure_cells(agency)}'
            f"<td>{_sparkline(agency.get('weekly', {}), labels)}</td></tr>"
        )
        for unit, count in agency.get("late_steps_by_unit", {}).items():
            late_rows.append(
                f"<tr><td>{_e(names.agency(code))}</td><td>{_e(unit)}</td>"
                f'<td class="n">{int(count)}</td></tr>'
            )
    total = summary["province"]
    title = (
        word("overview", lang)
        if summary.get("scope", "province") == "province"
        else (names.agency(str(summary["scope"])))
    )
    body = (
        f'<p class="muted">{word("legend", lang)}</p>'
        f'<table id="agencies" class="sortable"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody>"
        f"<tfoot><tr><td>{word('total', lang)}</td>{_figure_cells(total)}<td></td></tr></tfoot>"
        "</table>"
        f"<h2>{word('late_steps', lang)}</h2>"
    )
    if late_rows:
        body += (
            f'<table id="late-units" class="sortable"><thead><tr><th>{word("agency", lang)}</th>'
            f"<th>{word('unit', lang)}</th><th class=n>{word('count', lang)}</th></tr></thead>"
            f"<tbody>{''.join(late_rows)}</tbody></table>"
        )
    else:
        body += f"<p>{word('none', lang)}</p>"
    return _layout(title, body, lang, principal, now)


def _options(
    name: str, choices: Iterable[tuple[str, str]], chosen: str | None, everything: str
) -> str:
    items = [f'<option value="">{_e(everything)}</option>'] + [
        f'<option value="{_e(value)}"{" selected" if value == chosen else ""}>{_e(label)}</option>'
        for value, label in choices
    ]
    return f'<select name="{name}">{"".join(items)}</select>'


def _pager(path: str, params: Mapping[str, str], listing: Mapping[str, Any], lang: Lang) -> str:
    page, size, total = int(listing["page"]), int(listing["size"]), int(listing["total"])
    pages = max(1, -(-total // size))
    links = []

    def link(number: int, label: str) -> str:
        return f'<a href="{_e(path + "?" + urlencode({**params, "page": number}))}">{label}</a>'

    if page > 1:
        links.append(link(page - 1, word("previous", lang)))
    links.append(
        f"<span>{word('page', lang)} {page}/{pages} · {word('total', lang)} {total}</span>"
    )
    if page < pages:
        links.append(link(page + 1, word("next", lang)))
    return f'<div class="pager">{"".join(links)}</div>'


def list_page(
    kind: str,
    listing: Mapping[str, Any],
    params: Mapping[str, str],
    names: Names,
    lang: Lang,
    principal: Principal,
    now: datetime,
) -> str:
    """The overdue list (``kind`` "overdue") or the search's results ("search"): its filters,
    a row per dossier linking to its page, and the pager."""
    today = now.date()
    agencies = sorted(
        ((code, name) for code, name in names.agencies.items()), key=lambda item: item[1]
    )
    if principal.agency_code is not None and kind == "overdue":
        agencies = [(c, n) for c, n in agencies if c == principal.agency_code]
    procedures = sorted(names.procedures.items(), key=lambda item: item[1])
    every_procedure = word("all_procedures", lang)
    fields = [
        f"<label>{word('agency', lang)}"
        f"{_options('agency', agencies, params.get('agency'), word('all_agencies', lang))}</label>",
        f"<label>{word('procedure', lang)}"
        f"{_options('procedure', procedures, params.get('procedure'), every_procedure)}</label>",
    ]
    if kind == "overdue":
        channels = [(c, word(c, lang)) for c in ("IN_PERSON", "ONLINE", "POSTAL")]
        fields += [
            f"<label>{word('channel', lang)}"
            f"{_options('channel', channels, params.get('channel'), word('all_channels', lang))}"
            "</label>",
            f'<label>{word("deadline_from", lang)}<input type="date" name="deadline_from" '
            f'value="{_e(params.get("deadline_from", ""))}"></label>',
            f'<label>{word("deadline_to", lang)}<input type="date" name="deadline_to" '
            f'value="{_e(params.get("deadline_to", ""))}"></label>',
        ]
        heads = ["dossier_code", "agency", "procedure", "channel", "deadline", "days_overdue"]
    else:
        statuses = sorted((c, names.status(c, lang)) for c in names.statuses)
        fields = [
            f'<label>{word("dossier_code", lang)}<input name="code" '
            f'value="{_e(params.get("code", ""))}"></label>',
            *fields,
            f"<label>{word('status', lang)}"
            f"{_options('status', statuses, params.get('status'), word('all_statuses', lang))}"
            "</label>",
            f'<label>{word("received_from", lang)}<input type="date" name="received_from" '
            f'value="{_e(params.get("received_from", ""))}"></label>',
            f'<label>{word("received_to", lang)}<input type="date" name="received_to" '
            f'value="{_e(params.get("received_to", ""))}"></label>',
        ]
        heads = ["dossier_code", "agency", "procedure", "status", "received", "deadline"]
    button = word("filter", lang) if kind == "overdue" else word("find", lang)
    form = (
        f'<form class="filters" method="get" action="/ui/{kind}">{"".join(fields)}'
        f"<button>{button}</button></form>"
    )
    rows = []
    for item in listing["items"]:
        code = str(item["dossier_code"])
        link = f'<a href="/ui/dossiers/{_e(code)}">{_e(code)}</a>'
        cells = [
            link,
            _e(names.agency(item["agency_code"])),
            _e(names.procedure(item.get("procedure_code"))),
        ]
        if kind == "overdue":
            days = (today - date.fromisoformat(item["deadline"])).days
            cells += [_e(word(item.get("channel") or "", lang) if item.get("channel") else ""),
                      _e(item["deadline"]), f'<span class="bad">{days}</span>']  # fmt: skip
        else:
            cells += [_e(names.status(item["status"], lang)), _e(item.get("received") or ""),
                      _e(item.get("deadline") or "")]  # fmt: skip
        numeric = {5} if kind == "overdue" else set()
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    head = "".join(
        f"<th{' class=n' if kind == 'overdue' and i == 5 else ''}>{word(h, lang)}</th>"
        for i, h in enumerate(heads)
    )
    table = (
        f'<table id="{kind}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else f"<p>{word('no_rows', lang)}</p>"
    )
    shown = {k: v for k, v in params.items() if k != "page" and v}
    title = word("overdue", lang) if kind == "overdue" else word("search", lang)
    body = form + table + _pager(f"/ui/{kind}", shown, listing, lang)
    return _layout(title, body, lang, principal, now)


#: the province's clock: times are stored in UTC and shown as officials read them
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


def _date_part(value: str | None) -> str:
    """An ISO timestamp as local date and minute (a plain date as it is)."""
    if not value:
        return "–"
    if "T" not in value:
        return value
    return datetime.fromisoformat(value).astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")


def dossier_page(
    dossier: Mapping[str, Any],
    names: Names,
    lang: Lang,
    principal: Principal,
    now: datetime,
) -> str:
    """One dossier: status, dates, supplement pauses, its steps (unit, official, deadline,
    late steps marked) and its timeline."""
    code = str(dossier["dossier_code"])
    masked = not principal.sees_personal_data
    applicant = _e(dossier.get("applicant_name") or "–")
    if masked and dossier.get("applicant_name"):
        applicant += f' <span class="muted">({word("masked", lang)})</span>'
    facts = [
        ("status", _e(names.status(str(dossier["status"]), lang))),
        ("applicant", applicant),
        ("procedure", _e(names.procedure(dossier.get("procedure_code")))),
        ("agency", _e(names.agency(dossier.get("agency_code")))),
        ("channel", _e(word(str(dossier["channel"]), lang))),
        ("received", _e(_date_part(dossier.get("received_at")))),
        ("appointment", _e(dossier.get("appointment_date") or "–")),
        ("original_appointment", _e(dossier.get("original_appointment_date") or "–")),
        ("effective_deadline", _e(dossier.get("effective_deadline") or "–")),
        ("supplements", str(int(dossier.get("supplement_requests", 0)))),
        ("paused_days", str(int(dossier.get("paused_working_days", 0)))),
    ]
    if dossier.get("paused_since"):
        facts.append(("paused_since", _e(dossier["paused_since"])))
    facts_html = "".join(f"<dt>{word(k, lang)}</dt><dd>{v}</dd>" for k, v in facts)
    late = {int(step["no"]): step for step in dossier.get("late_steps", [])}
    culprit = dossier.get("made_late_by")
    steps = list(dossier.get("steps", []))
    current = dossier.get("current_step")
    if current and not current.get("completed_at"):
        steps.append(current)
    step_rows = []
    for step in steps:
        number = int(step["no"])
        overrun = late.get(number)
        deadline = overrun["deadline"] if overrun else step.get("deadline")
        completed = step.get("completed_at")
        is_culprit = culprit is not None and int(culprit["no"]) == number
        mark = ""
        if overrun:
            mark = f'<span class="bad">{int(overrun["working_days_over"])}</span>'
            if is_culprit:
                mark += f' <span class="bad">({word("made_late_by", lang)})</span>'
        step_rows.append(
            f'<tr{" class=late-row" if overrun else ""} data-step="{number}">'
            f"<td class=n>{number}</td><td>{_e(step['name'])}</td><td>{_e(step['unit'])}</td>"
            f"<td>{_e(step['official'])}</td><td>{_e(deadline or '–')}</td>"
            f"<td>{_e(_date_part(completed)) if completed else word('in_hand', lang)}</td>"
            f"<td class=n>{mark}</td></tr>"
        )
    steps_html = (
        f'<table id="steps"><thead><tr><th class=n>{word("step", lang)}</th>'
        f"<th>{word('step_name', lang)}</th><th>{word('unit', lang)}</th>"
        f"<th>{word('official', lang)}</th><th>{word('step_deadline', lang)}</th>"
        f"<th>{word('completed', lang)}</th><th class=n>{word('late_by', lang)}</th></tr></thead>"
        f"<tbody>{''.join(step_rows)}</tbody></table>"
        if step_rows
        else f"<p>{word('none', lang)}</p>"
    )
    events = "".join(
        f"<tr><td>{_e(_date_part(entry[2]))}</td><td>{_e(entry[1])}</td>"
        f"<td>{_e(names.status(str(entry[4]), lang))}</td>"
        f"<td>{_e(entry[5] if len(entry) > 5 else '')}</td></tr>"
        for entry in dossier.get("timeline", [])
    )
    timeline_html = (
        f'<table id="timeline"><thead><tr><th>{word("when", lang)}</th>'
        f"<th>{word('event', lang)}</th>"
        f"<th>{word('status', lang)}</th><th>{word('note', lang)}</th></tr></thead>"
        f"<tbody>{events}</tbody></table>"
    )
    body = (
        f"<dl>{facts_html}</dl><h2>{word('steps', lang)}</h2>{steps_html}"
        f"<h2>{word('timeline', lang)}</h2>{timeline_html}"
    )
    return _layout(f"{word('dossier', lang)} {code}", body, lang, principal, now)


def login_page(lang: Lang, now: datetime, *, failed: bool = False) -> str:
    error = f'<p class="error" role="alert">{word("bad_key", lang)}</p>' if failed else ""
    body = (
        f'<form class="login" method="post" action="/ui/login">{error}'
        f"<p>{word('sign_in_help', lang)}</p>"
        f'<label for="key">{word("api_key", lang)}</label>'
        '<input id="key" name="key" type="password" autocomplete="current-password" required>'
        f"<button>{word('sign_in', lang)}</button></form>"
    )
    return _layout(word("sign_in", lang), body, lang, None, now, refresh=False)


def error_page(
    status: int, message: str, lang: Lang, principal: Principal | None, now: datetime
) -> str:
    title = {
        400: word("bad_request", lang),
        403: word("forbidden", lang),
        404: word("not_found", lang),
    }.get(status, word("unavailable", lang))
    return _layout(title, f"<p>{_e(message)}</p>", lang, principal, now, refresh=False)
