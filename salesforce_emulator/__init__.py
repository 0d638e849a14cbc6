"""A local Salesforce REST stand-in for sfsync's tests, demo and compose setup."""
from .client import AdminClient, http_session
from .connected_apps import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from .org import DEFAULT_ORG, DEFAULT_TOKEN
from .server import EmulatorServer, serve

__all__ = ["AdminClient", "DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "DEFAULT_ORG", "DEFAULT_TOKEN",
           "EmulatorServer", "http_session", "serve"]
