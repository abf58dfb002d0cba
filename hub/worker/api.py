"""The worker's answers, for the JSON API and the web pages alike: who asks (``hub.access``),
what their role lets them see, and the province-wide answers gathered from every worker.

Each worker's view covers the partitions it holds. A dossier is answered by the worker
holding its partition (a request to another worker is forwarded there); a list or a summary
is answered by the worker asked, from its own part and the parts of the workers holding the
other partitions, each asked once (scatter-gather, ``hub.worker.province``). A forwarded
request carries the caller's own key, so every worker applies the caller's role itself.

Errors are :class:`ApiError`: 400 naming the parameter, 401 without a known key, 403 outside
the role, 404 for an unknown code, 503 while the group rebalances or an answer cannot be
recorded in the audit trail.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import aiohttp

from hub.access.roles import Principal, mask_name
from hub.access.store import AccessStore
from hub.domain.deadlines import effective_deadline
from hub.domain.events import local_date
from hub.domain.lifecycle import DossierState
from hub.domain.supervision import Figures
from hub.engine.directory import partition_for
from hub.engine.store import META_KEY
from hub.reference import ReferenceData
from hub.settings import HubSettings
from hub.worker.figures import LocalView, agency_summary, province_part
from hub.worker.processor import decode_state, utc_now
from hub.worker.province import figures_json, merge_province, merge_rows, merge_summaries
from hub.worker.query import (
    MAX_PAGE,
    MAX_PAGE_SIZE,
    BadParameterError,
    overdue_query,
    search_query,
)

__all__ = ["FORWARDED", "KEY_COOKIE", "Api", "ApiError", "presented_key"]

#: set on a request a worker sends another: the other answers for its own partitions only
FORWARDED = "X-Hub-Forwarded"
#: the cookie the web page's sign-in sets (the key itself: HttpOnly, SameSite=Strict)
KEY_COOKIE = "hub_key"
#: weeks of on-time trend in the province summary
TREND_WEEKS = 8

Q = TypeVar("Q")


class ApiError(Exception):
    def __init__(self, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.parameter = parameter

    def as_json(self) -> dict[str, str]:
        body = {"error": str(self)}
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return body


class Engine(Protocol):
    def owns(self, partition: int) -> bool: ...
    def read(self, partition: int, key: bytes) -> bytes | None: ...
    def log_access(
        self, partition: int, *, who: str, role: str, dossier_code: str, at: str
    ) -> Any: ...


class Owners(Protocol):
    url: str

    def owner(self, partition: int) -> str | None: ...


class ViewSource(Protocol):
    view: LocalView


def presented_key(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    """The API key a request presents: ``Authorization: Bearer``, the ingress's
    ``X-Api-Key``, or the web page's cookie."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("X-Api-Key") or cookies.get(KEY_COOKIE) or None


class Api:
    def __init__(
        self,
        settings: HubSettings,
        reference: ReferenceData,
        engine: Engine,
        owners: Owners,
        views: ViewSource,
        access: AccessStore,
    ) -> None:
        self.settings = settings
        self.reference = reference
        self.engine = engine
        self.owners = owners
        self.views = views
        self.access = access
        self._session: aiohttp.ClientSession | None = None

    # --- who asks -------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Principal:
        key = presented_key(headers, cookies)
        if key is None:
            raise ApiError(401, "credentials required: Authorization: Bearer <API key>")
        principal = self.access.principal(key)
        if principal is None:
            raise ApiError(401, "unknown API key")
        return principal

    # --- a dossier ------------------------------------------------------------------------

    async def dossier(self, principal: Principal, key: str, code: str) -> dict[str, Any]:
        """The dossier as ``principal`` may see it (its owner answers: forwarded there)."""
        if not principal.lists_dossiers:
            raise ApiError(403, f"the {principal.role} role sees figures, not dossiers")
        raw = code.encode()
        if raw.startswith(META_KEY[:1]):
            raise ApiError(404, f"no dossier {code}")
        partition = partition_for(raw, self.settings.partitions)
        if not self.engine.owns(partition):
            return await self._from_owner(partition, key, f"/dossiers/{code}")
        state = decode_state(self.engine.read(partition, raw))
        if state is None:
            raise ApiError(404, f"no dossier {code}")
        if not principal.may_read_dossier((state.agency_code, *state.handled_by)):
            # 403, not 404: the code is not a secret, the dossier is
            raise ApiError(
                403, f"dossier {code} is not one agency {principal.agency_code} holds or held"
            )
        shown = principal.sees_personal_data and state.applicant_name is not None
        if shown:
            await self._record_read(partition, principal, code)
        return self._dossier_json(state, unmasked=shown)

    async def _record_read(self, partition: int, principal: Principal, code: str) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        done = self.engine.log_access(
            partition, who=principal.key_id, role=principal.role.value, dossier_code=code, at=at
        )
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), timeout=15)
        except Exception as exc:
            raise ApiError(
                503, f"the read could not be recorded in the audit trail ({exc}); try again"
            ) from exc

    def _dossier_json(self, state: DossierState, *, unmasked: bool) -> dict[str, Any]:
        data: dict[str, Any] = state.to_dict()
        name = state.applicant_name
        data["applicant_name"] = name if unmasked else mask_name(name)
        data["portal_status_code"] = self.reference.portal_codes[state.status]
        deadline = effective_deadline(state, self.reference.calendar)
        data["effective_deadline"] = deadline.isoformat() if deadline else None
        data.pop("alerts_emitted", None)
        # accountability: the first step that overran its deadline (all of them: late_steps)
        data["made_late_by"] = state.late_steps[0].to_dict() if state.late_steps else None
        return data

    # --- lists ----------------------------------------------------------------------------

    def _list_query(
        self,
        principal: Principal,
        params: Mapping[str, str],
        forwarded: bool,
        parse: Callable[..., Q],
    ) -> Q:
        """A list's query, for a role that may list dossiers; a worker asked by another for
        its part of a page takes up to ``MAX_PAGE * MAX_PAGE_SIZE`` rows."""
        if not principal.lists_dossiers:
            raise ApiError(403, f"the {principal.role} role sees figures, not dossiers")
        try:
            return parse(
                params,
                self.reference.agencies,
                self.reference.procedures,
                max_size=MAX_PAGE * MAX_PAGE_SIZE if forwarded else MAX_PAGE_SIZE,
            )
        except BadParameterError as exc:
            raise ApiError(400, str(exc), exc.parameter) from None

    async def overdue(
        self, principal: Principal, key: str, params: Mapping[str, str], *, forwarded: bool
    ) -> dict[str, Any]:
        """Open dossiers past their appointment date, province-wide, oldest deadline first;
        an agency's key sees its own only."""
        query = self._list_query(principal, params, forwarded, overdue_query)
        scope = principal.scope
        if scope is not None:
            if query.agency not in (None, scope):
                raise ApiError(403, f"an agency key of {scope} sees its own overdue dossiers only")
            query = dataclasses.replace(query, agency=scope)
        today = local_date(utc_now()).isoformat()
        needed = query.page * query.size
        total, rows = self.views.view.overdue(query, today, needed)
        mine = {
            "total": total,
            "items": [
                {
                    "dossier_code": code,
                    "agency_code": holder,
                    "deadline": deadline,
                    "procedure_code": procedure,
                    "channel": channel,
                }
                for deadline, code, holder, procedure, channel in rows
            ],
        }
        # each other worker sends the first page * size rows of its own, all this page needs
        parts = [mine, *await self._peer_parts(key, "/overdue", query.params(needed), forwarded)]
        return merge_rows(parts, query.page, query.size)

    async def search(
        self, principal: Principal, key: str, params: Mapping[str, str], *, forwarded: bool
    ) -> dict[str, Any]:
        """Dossiers by code prefix, agency, status, procedure and date received, newest
        first; an agency's key finds those its agency holds or held."""
        query = self._list_query(principal, params, forwarded, search_query)
        needed = query.page * query.size
        total, rows = self.views.view.search(query, principal.scope, needed)
        mine = {
            "total": total,
            "items": [
                {
                    "dossier_code": code,
                    "agency_code": agency,
                    "status": status,
                    "procedure_code": procedure or None,
                    "channel": channel,
                    "received": received,
                    "deadline": deadline or None,
                }
                for code, (agency, status, procedure, channel, received, deadline, _) in rows
            ],
        }
        parts = [mine, *await self._peer_parts(key, "/dossiers", query.params(needed), forwarded)]
        return merge_rows(parts, query.page, query.size, newest_first=True)

    # --- figures --------------------------------------------------------------------------

    async def agency_summary(
        self, principal: Principal, key: str, code: str, *, forwarded: bool
    ) -> dict[str, Any]:
        """An agency's figures, province-wide, in all and per procedure."""
        if code not in self.reference.agencies:
            raise ApiError(404, f"unknown agency code {code!r}")
        if not principal.may_read_agency(code):
            raise ApiError(
                403, f"an agency key of {principal.agency_code} sees its own figures only"
            )
        view = self.views.view
        mine = agency_summary(dict(view.figures), code, dict(view.late_steps))
        parts = [mine, *await self._peer_parts(key, f"/agencies/{code}/summary", {}, forwarded)]
        return merge_summaries(code, parts)

    async def province_summary(
        self, principal: Principal, key: str, *, forwarded: bool
    ) -> dict[str, Any]:
        """Every agency's figures and weekly trend, and the province's total; an agency's
        key sees its own agency only (and its total is that agency's)."""
        today = local_date(utc_now())
        mine = province_part(self.views.view, TREND_WEEKS, today)
        parts = [mine, *await self._peer_parts(key, "/province/summary", {}, forwarded)]
        merged = merge_province(parts)
        scope = principal.scope
        if scope is not None:
            own = {code: f for code, f in merged["agencies"].items() if code == scope}
            counts = own[scope]["counts"] if own else {}
            merged = {"province": figures_json(Figures.from_dict(counts)), "agencies": own}
        merged["scope"] = scope or "province"
        return merged

    # --- other workers --------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, url: str, key: str, params: Mapping[str, str]) -> tuple[int, Any]:
        headers = {FORWARDED: "1", "Authorization": f"Bearer {key}"}
        async with self._client().get(url, params=dict(params), headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def _from_owner(self, partition: int, key: str, path: str) -> dict[str, Any]:
        owner = self.owners.owner(partition)
        if owner is None or owner == self.owners.url:
            raise ApiError(503, f"partition {partition} has no owner now (rebalancing)")
        try:
            status, body = await self._get(f"{owner}{path}", key, {})
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(
                503, f"the owner of partition {partition} did not answer: {exc!r}"
            ) from exc
        if status != 200:
            raise ApiError(status, str(body.get("error") if isinstance(body, dict) else body))
        return dict(body)

    async def _peer_parts(
        self, key: str, path: str, params: Mapping[str, str], forwarded: bool
    ) -> list[Any]:
        """The parts of a province-wide answer that other workers hold: each worker holding a
        partition this one does not is asked once. A forwarded request has none to ask."""
        if forwarded:
            return []
        owners: set[str] = set()
        for partition in range(self.settings.partitions):
            if self.engine.owns(partition):
                continue
            owner = self.owners.owner(partition)
            if owner is None or owner == self.owners.url:
                raise ApiError(503, f"partition {partition} has no owner now (rebalancing)")
            owners.add(owner)

        async def ask(url: str) -> Any:
            status, body = await self._get(f"{url}{path}", key, params)
            if status != 200:
                raise ApiError(503, f"the worker at {url} answered {status}")
            return body

        try:
            return list(await asyncio.gather(*(ask(url) for url in sorted(owners))))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(503, f"a worker holding partitions did not answer: {exc!r}") from exc
