"""The web page's routes on the worker's faust web server: ``/ui`` (the province at a glance),
``/ui/overdue``, ``/ui/search``, ``/ui/dossiers/{code}``, and signing in and out.

Each page is the API's own answer (``hub.worker.api``, the same roles and province-wide
gathering) rendered by ``hub.web.pages``. Signing in checks a key and keeps it in an
HttpOnly, SameSite=Strict cookie, so the page's requests carry it as an API call's
``Authorization`` header would; a page asked without a key answers 401 with the sign-in form.
Vietnamese by default; ``?lang=en`` switches (remembered in a cookie).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import faust
from aiohttp.web import Response as AioResponse
from faust.web import View

from hub.access.roles import Principal
from hub.web.i18n import LANGUAGES, Lang
from hub.web.pages import Names, dossier_page, error_page, list_page, login_page, overview_page
from hub.worker.api import KEY_COOKIE, TREND_WEEKS, Api, ApiError, presented_key

__all__ = ["add_pages"]

LANG_COOKIE = "hub_lang"
#: a signed-in page keeps its key this long (then the sign-in form again)
SESSION_S = 12 * 3600
_LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

PageBuilder = Callable[[Principal, str, Lang, datetime], Awaitable[str]]


def _language(request: Any) -> tuple[Lang, bool]:
    """The page's language and whether the request chose it (then remembered)."""
    asked = request.query.get("lang")
    for lang in LANGUAGES:
        if asked == lang:
            return lang, True
    for lang in LANGUAGES:
        if request.cookies.get(LANG_COOKIE) == lang:
            return lang, False
    return "vi", False


def _html(text: str, status: int = 200) -> AioResponse:
    response = AioResponse(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"  # personal data may be on it
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
    )
    return response


def add_pages(app: faust.App, api: Api, names: Names) -> None:
    async def render(request: Any, build: PageBuilder) -> AioResponse:
        lang, chosen = _language(request)
        now = datetime.now(_LOCAL)
        try:
            principal = api.authenticate(request.headers, request.cookies)
        except ApiError:
            response = _html(login_page(lang, now), status=401)
        else:
            key = presented_key(request.headers, request.cookies) or ""
            try:
                response = _html(await build(principal, key, lang, now))
            except ApiError as exc:
                page = error_page(exc.status, str(exc), lang, principal, now)
                response = _html(page, status=exc.status)
        if chosen:
            response.set_cookie(LANG_COOKIE, lang, path="/", samesite="Strict", max_age=31536000)
        return response

    @app.page("/")
    async def home(web: Any, request: Any) -> Any:
        return AioResponse(status=303, headers={"Location": "/ui"})

    @app.page("/ui")
    async def overview(web: Any, request: Any) -> Any:
        async def build(who: Principal, key: str, lang: Lang, now: datetime) -> str:
            summary = await api.province_summary(who, key, forwarded=False)
            return overview_page(summary, names, lang, who, now, weeks=TREND_WEEKS)

        return await render(request, build)

    def list_view(kind: str) -> Callable[[Any, Any], Awaitable[Any]]:
        """The overdue list's page or the search's: the API's answer as a page."""
        answer = api.overdue if kind == "overdue" else api.search

        async def page(web: Any, request: Any) -> Any:
            params = {k: v for k, v in request.query.items() if v and k != "lang"}

            async def build(who: Principal, key: str, lang: Lang, now: datetime) -> str:
                listing = await answer(who, key, params, forwarded=False)
                return list_page(kind, listing, params, names, lang, who, now)

            return await render(request, build)

        page.__name__ = f"{kind}_page"
        return page

    app.page("/ui/overdue")(list_view("overdue"))
    app.page("/ui/search")(list_view("search"))

    @app.page("/ui/dossiers/{code}")
    async def dossier(web: Any, request: Any, code: str) -> Any:
        async def build(who: Principal, key: str, lang: Lang, now: datetime) -> str:
            return dossier_page(await api.dossier(who, key, code), names, lang, who, now)

        return await render(request, build)

    @app.page("/ui/login")
    class SignIn(View):
        async def get(self, request: Any) -> Any:
            lang, _ = _language(request)
            return _html(login_page(lang, datetime.now(_LOCAL)))

        async def post(self, request: Any) -> Any:
            lang, _ = _language(request)
            form = await request.post()
            key = str(form.get("key", "")).strip()
            if not key or api.access.principal(key) is None:
                return _html(login_page(lang, datetime.now(_LOCAL), failed=True), status=401)
            response = AioResponse(status=303, headers={"Location": "/ui"})
            response.set_cookie(
                KEY_COOKIE, key, path="/", httponly=True, samesite="Strict",
                secure=bool(request.secure), max_age=SESSION_S,
            )  # fmt: skip
            return response

    @app.page("/ui/logout")
    async def sign_out(web: Any, request: Any) -> Any:
        response = AioResponse(status=303, headers={"Location": "/ui/login"})
        response.del_cookie(KEY_COOKIE, path="/")
        return response
