"""The hosts a command talks to, named in its messages."""

from __future__ import annotations

from urllib.parse import urlparse

from events.redis_conn import display_url
from schemas.settings import Settings, SettingsError, load_settings


def redis_target() -> str:
    """The Redis a command talks to, for messages (without its password)."""
    try:
        return display_url(load_settings().redis_url.get_secret_value())
    except SettingsError:
        return "SFSYNC_REDIS_URL"


def salesforce_target(settings: Settings) -> str:
    """The Salesforce host a command talks to, for messages: the instance, else the login host."""
    if settings.salesforce_instance_url:
        return urlparse(settings.salesforce_instance_url).netloc or settings.salesforce_instance_url
    domain = settings.salesforce_domain
    return urlparse(domain).netloc if "://" in domain else f"{domain}.salesforce.com"
