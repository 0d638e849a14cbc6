"""Fixtures: one emulator per test session, reset before every test."""
from __future__ import annotations

import pytest
import requests

from salesforce_emulator import EmulatorServer


@pytest.fixture(scope="session")
def emulator():
    with EmulatorServer(port=0) as server:
        yield server


@pytest.fixture
def emu(emulator):
    emulator.admin.reset()
    return emulator


@pytest.fixture
def sf(emu):
    return emu.salesforce()


@pytest.fixture
def api(emu):
    """Plain requests against the data API: `api("GET", "query/", params=...)`."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {emu.token}"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, f"{emu.url}/services/data/v59.0/{path}", timeout=30, **kwargs)

    return call
