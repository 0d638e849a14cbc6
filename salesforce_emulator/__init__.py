"""A local Salesforce REST stand-in for sfsync's tests, demo and compose setup."""
from .client import AdminClient, http_session
from .org import DEFAULT_TOKEN
from .server import EmulatorServer, serve

__all__ = ["AdminClient", "DEFAULT_TOKEN", "EmulatorServer", "http_session", "serve"]
