"""Fixtures for the emulator's own tests, on the session's one emulator (tests/conftest.py), reset per test."""
from __future__ import annotations

import pytest
import requests


@pytest.fixture
def emu(emulator):
    # orgs and connected apps created by a test go with it, so no other test (here or elsewhere) sees them
    emulator.admin.reset_all()
    yield emulator
    emulator.admin.reset_all()


@pytest.fixture
def sf(emu):
    return emu.salesforce()


@pytest.fixture
def api(emu):
    """Plain requests against the data API: `api("GET", "query/", params=...)`."""
    return _data_api(emu.url, emu.token)


@pytest.fixture
def api_as(emu):
    """`api_as(token)`: an `api` caller with another bearer token, which picks the org."""
    return lambda token: _data_api(emu.url, token)


def _data_api(url: str, token: str):
    """`call(method, path, **kwargs)` on the data API with a bearer token (which picks the org)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, f"{url}/services/data/v59.0/{path}", timeout=30, **kwargs)

    return call
