"""Fixtures for the emulator's own tests, on the session's one emulator (tests/conftest.py), reset per test."""
from __future__ import annotations

import pytest
import requests


@pytest.fixture
def emu(emulator):
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
