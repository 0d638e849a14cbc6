"""A rediss:// URL with ACL user:password reaches redis-py and kombu as TLS with verified certificates."""

from __future__ import annotations

import ssl

import pytest
import redis
from celery import Celery

URL = "rediss://sfsync:s3cret@redis.example:6380/0?ssl_cert_reqs=required"


def _kombu_connparams(app: Celery) -> dict:
    """What kombu's Redis channel would hand redis-py, computed without connecting."""
    connection = app.connection_for_write()
    transport = connection.transport
    channel = object.__new__(transport.Channel)  # Channel() itself would PING the server
    channel.connection = transport
    return channel._connparams()


def test_redis_py_reads_user_password_and_tls_from_the_url():
    client = redis.Redis.from_url(URL)
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert (kwargs["username"], kwargs["password"]) == ("sfsync", "s3cret")
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.example", 6380, 0)
    assert kwargs["ssl_cert_reqs"] == "required"


@pytest.mark.parametrize("broker_use_ssl", [None, {"ssl_cert_reqs": ssl.CERT_REQUIRED}])
def test_kombu_broker_takes_acl_credentials_and_verified_tls_from_the_url(broker_use_ssl):
    app = Celery("tls-test", broker=URL, set_as_current=False)
    if broker_use_ssl is not None:
        app.conf.broker_use_ssl = broker_use_ssl
    params = _kombu_connparams(app)
    assert params["connection_class"] is redis.SSLConnection
    assert (params["username"], params["password"], params["db"]) == ("sfsync", "s3cret", 0)
    assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_rediss_without_cert_reqs_needs_broker_use_ssl_or_kombu_skips_verification():
    # The trap: kombu turns a bare rediss:// (and broker_use_ssl={}, which is falsy) into
    # CERT_NONE with only a warning. broker_use_ssl must name ssl_cert_reqs.
    bare = URL.split("?")[0]
    for use_ssl in (None, {}):
        app = Celery("tls-test", broker=bare, set_as_current=False)
        if use_ssl is not None:
            app.conf.broker_use_ssl = use_ssl
        assert _kombu_connparams(app)["ssl_cert_reqs"] == ssl.CERT_NONE

    app = Celery("tls-test", broker=bare, set_as_current=False)
    app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    params = _kombu_connparams(app)
    assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert params["connection_class"] is redis.SSLConnection


BARE = URL.split("?")[0]


@pytest.mark.parametrize("url", [BARE, URL])
def test_the_publisher_and_the_worker_given_a_rediss_url_both_verify_certificates(url):
    from events.publish import publisher_app
    from schemas.settings import load_settings
    from workers.celery_config import celery_config

    worker = Celery("tls-test", set_as_current=False)
    worker.conf.update(celery_config(load_settings({"SFSYNC_REDIS_URL": url})))
    publisher = publisher_app(url)
    assert publisher.conf.broker_use_ssl == worker.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for app in (worker, publisher):
        params = _kombu_connparams(app)
        assert params["connection_class"] is redis.SSLConnection
        assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_the_publisher_given_a_plain_redis_url_sets_no_tls():
    from events.publish import publisher_app

    app = publisher_app("redis://127.0.0.1:6379/3")
    assert not app.conf.broker_use_ssl
    assert _kombu_connparams(app)["connection_class"] is not redis.SSLConnection


def test_a_rediss_url_asking_for_no_verification_still_overrides_the_shared_default():
    from events.publish import publisher_app

    app = publisher_app(BARE + "?ssl_cert_reqs=none")
    assert _kombu_connparams(app)["ssl_cert_reqs"] == ssl.CERT_NONE
