"""The connector contract for the national-portal sink, against the real portal emulator
(:mod:`connectors.portal.emulator`, real HTTP with a bearer token); a status the portal
refuses (a required field missing: HTTP 422) is the bad record."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.portal.connector import PortalConnector
from connectors.portal.emulator import PortalEmulator
from connectors.sdk import Connector, ConnectorConfigError, parse_config
from tests.contract.connector_contract import SinkContract

AGENCY = "000.00.03.H40"
TOKEN = "contract-portal-token"


def status(record_id: str, **changes: Any) -> dict[str, Any]:
    """A decoded DossierStatusChanged record as the JSON converter gives it."""
    value: dict[str, Any] = {
        "event_id": record_id,
        "dossier_code": f"{AGENCY}-250805-{zlib.crc32(record_id.encode()) % 10**4:04d}",
        "procedure_code": "2.000488",
        "channel": "ONLINE",
        "portal_status_code": 2,
        "agency_code_handling": AGENCY,
        "applicant_name": "Lê Văn Tám",
    }
    value.update(changes)
    return value


class TestPortalContract(SinkContract):
    connector_class: ClassVar[type[Connector]] = PortalConnector
    bad_settings_path = "settings.rate_burst"
    emulators: ClassVar[dict[Path, PortalEmulator]] = {}

    @pytest.fixture(autouse=True)
    def _stop_emulators(self) -> Iterator[None]:
        yield
        for emulator in self.emulators.values():
            emulator.stop()
        self.emulators.clear()

    def emulator(self, tmp_path: Path) -> PortalEmulator:
        if tmp_path not in self.emulators:
            self.emulators[tmp_path] = PortalEmulator(token=TOKEN).start()
        return self.emulators[tmp_path]

    def extra_config(self) -> dict[str, Any]:
        return {**super().extra_config(), "errors.retry.timeout": -1}

    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {
            "portal_url": self.emulator(tmp_path).url,
            "token": TOKEN,
            "breaker_cooldown_s": 0.5,
        }

    def bad_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"portal_url": "http://127.0.0.1:1", "rate_burst": 0}

    def delivered(self, tmp_path: Path) -> list[str]:
        return [item["key"] for item in self.emulator(tmp_path).received()["items"]]

    def good_value(self, record_id: str) -> bytes:
        return json.dumps(status(record_id)).encode()

    def bad_value(self) -> bytes:
        # no procedure code: the portal answers 422 naming MaTTHC
        return json.dumps(status("refused", procedure_code=None)).encode()

    def test_an_outage_is_never_dead_lettered(self, tmp_path: Path) -> None:
        raw = self.raw_config(tmp_path)
        raw["errors.retry.timeout"] = 5000
        with pytest.raises(ConnectorConfigError, match=r"errors\.retry\.timeout: retry_forever"):
            parse_config(raw, "test")

    def test_the_token_is_never_printed(self, tmp_path: Path) -> None:
        config = parse_config(self.raw_config(tmp_path), "test")
        assert TOKEN not in repr(config.connector_settings)
        assert TOKEN not in json.dumps(config.describe(), default=str)
