"""A sentinel(s):// SFSYNC_REDIS_URL reaches redis-py and kombu as the same sentinels, primary, database and login."""

from __future__ import annotations

import ssl

import pytest
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection

from events.publish import publisher_app
from events.redis_conn import connect, describe_primary, display_url
from schemas.redis_url import parse_sentinel_url
from schemas.settings import SettingsError, load_settings
from workers.broker_guard import GuardedChannel, GuardedSentinelChannel
from workers.celery_config import celery_config

THREE = ("sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380;"
         "sentinel://10.0.0.3/2?master_name=sfsync")
TLS = ("sentinels://sfsync:p%40ss@s1.example:26379;sentinels://s2.example:26379/0"
       "?master_name=sfsync&sentinel_password=watch&ssl_ca_certs=/etc/ca.pem")


def test_given_three_sentinels_when_parsed_then_every_address_with_default_port_db_and_master_name():
    address = parse_sentinel_url(THREE)

    assert address.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    assert (address.master_name, address.db, address.username, address.password) == ("sfsync", 2, None, "s3cret")
    assert address.tls is False and address.sentinel_kwargs() == {}


def test_given_no_master_name_when_parsed_then_mymaster_and_database_zero():
    address = parse_sentinel_url("sentinel://localhost")

    assert (address.sentinels, address.master_name, address.db) == ((("localhost", 26379),), "mymaster", 0)


def test_given_tls_acl_and_sentinel_password_when_parsed_then_decoded_credentials_for_primary_and_sentinels():
    address = parse_sentinel_url(TLS)

    assert (address.username, address.password) == ("sfsync", "p@ss")
    assert address.primary_kwargs() == {"db": 0, "ssl": True, "ssl_cert_reqs": "required",
                                        "ssl_ca_certs": "/etc/ca.pem", "username": "sfsync", "password": "p@ss"}
    assert address.sentinel_kwargs() == {"ssl": True, "ssl_cert_reqs": "required", "ssl_ca_certs": "/etc/ca.pem",
                                         "password": "watch"}


def test_given_an_ipv6_sentinel_when_parsed_then_host_without_brackets_and_kombu_url_with_them():
    address = parse_sentinel_url("sentinel://[::1]:26379/1")

    assert address.sentinels == (("::1", 26379),)
    assert address.kombu_url() == "sentinel://[::1]:26379/1"


@pytest.mark.parametrize("url, problem", [
    ("sentinel://:a@h1;sentinel://:b@h2", "different passwords"),
    ("sentinel://h1/1;sentinel://h2/2", "different databases"),
    ("sentinel://h1;redis://h2", "address 2 does not start with sentinel://"),
    ("sentinel://h1/zero", "database is a number"),
    ("sentinel://h1:notaport", "port"),
    ("sentinel://:26379", "no host"),
    ("sentinel://h1?master=x", "unknown query parameter 'master'"),
    ("sentinel://h1?ssl_cert_reqs=required", "needs sentinels://"),
    ("sentinels://h1?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
    ("sentinel://h1?master_name=", "master_name is empty"),
    ("sentinel://h1?master_name=a;sentinel://h2?master_name=b", "given twice"),
])
def test_given_a_malformed_sentinel_url_when_parsed_then_the_problem_is_named(url, problem):
    with pytest.raises(ValueError, match=problem):
        parse_sentinel_url(url)


def test_given_sentinel_urls_when_settings_load_then_accepted_and_a_bad_one_named_without_its_password():
    assert load_settings({"SFSYNC_REDIS_URL": THREE}).redis_url.get_secret_value() == THREE
    assert load_settings({"SFSYNC_REDIS_URL": TLS}).redis_url.get_secret_value() == TLS

    with pytest.raises(SettingsError) as refused:
        load_settings({"SFSYNC_REDIS_URL": "sentinel://:hunter2@h1;sentinel://:other@h2"})

    assert "SFSYNC_REDIS_URL" in str(refused.value) and "different passwords" in str(refused.value)
    assert "hunter2" not in str(refused.value) and "other" not in str(refused.value)


def test_given_a_sentinel_url_when_displayed_then_addresses_master_and_db_without_credentials():
    assert display_url(THREE) == ("sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;"
                                  "sentinel://10.0.0.3:26379/2?master_name=sfsync")
    assert "p@ss" not in display_url(TLS) and "watch" not in display_url(TLS)


def test_given_a_sentinel_url_when_connect_then_a_sentinel_pool_for_the_master_with_db_and_password():
    client = connect(THREE)
    pool = client.connection_pool

    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "sfsync"
    assert pool.connection_class is SentinelManagedConnection
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "s3cret")
    assert pool.connection_kwargs["decode_responses"] is True
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380, 26379]
    # the sentinels' own connections never wait forever, and carry no Redis password
    first = sentinels[0].connection_pool.connection_kwargs
    assert first["socket_timeout"] == 5 and first["password"] is None


def test_given_a_tls_sentinel_url_when_connect_then_tls_to_primary_and_sentinels_with_their_own_password():
    pool = connect(TLS).connection_pool

    assert pool.connection_class is SentinelManagedSSLConnection
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("sfsync", "p@ss")
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool
    assert sentinel.connection_kwargs["password"] == "watch"
    assert sentinel.connection_class.__name__ == "SSLConnection"


def test_given_a_sentinel_url_when_celery_configured_then_kombu_gets_every_address_with_db_and_master_name():
    config = celery_config(load_settings({"SFSYNC_REDIS_URL": THREE}))

    assert config["broker_url"] == ("sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26380/2;"
                                    "sentinel://:s3cret@10.0.0.3:26379/2")
    options = config["broker_transport_options"]
    assert options["master_name"] == "sfsync"
    assert options["sentinel_kwargs"] == {"socket_timeout": 30, "socket_connect_timeout": 10}
    assert options["visibility_timeout"] == 60 and "broker_use_ssl" not in config


def test_given_a_tls_sentinel_url_when_celery_configured_then_kombu_uses_verified_tls_on_both_sides():
    config = celery_config(load_settings({"SFSYNC_REDIS_URL": TLS}))

    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ca.pem"}
    assert config["broker_transport_options"]["sentinel_kwargs"]["ssl"] is True
    assert config["broker_transport_options"]["sentinel_kwargs"]["password"] == "watch"
    assert config["broker_url"].startswith("sentinel://sfsync:p%40ss@s1.example:26379/0;")


def test_given_a_tls_sentinel_url_when_kombu_builds_connection_params_then_acl_db_and_sentinel_ssl_class():
    app = publisher_app(TLS)
    connection = app.connection_for_write()
    transport = connection.transport
    channel = object.__new__(transport.Channel)  # Channel() itself would connect
    channel.connection = transport
    params = channel._connparams()

    assert transport.Channel.__name__ == "SentinelChannel" or issubclass(transport.Channel, GuardedSentinelChannel)
    assert (params["username"], params["password"], params["db"]) == ("sfsync", "p@ss", 0)
    assert params["connection_class"].__name__ == "SentinelManagedSSLConnection"
    assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert connection.transport_options["master_name"] == "sfsync"


def test_given_the_guarded_sentinel_channel_then_it_reads_through_the_guard_and_finds_the_master_by_sentinel():
    assert GuardedSentinelChannel._brpop_read is GuardedChannel._brpop_read
    assert "master_name" in GuardedSentinelChannel.from_transport_options
    assert hasattr(GuardedSentinelChannel, "_sentinel_managed_pool")


def test_given_a_plain_redis_url_when_primary_described_then_host_and_port_without_asking_anyone():
    assert describe_primary("redis://:pw@cache.internal:6380/0") == "cache.internal:6380"
    assert describe_primary("unix:///run/redis.sock") == "/run/redis.sock"


def test_given_a_sentinel_url_when_celery_configured_then_the_unacked_sweep_lock_expires_within_the_visibility_timeout():
    # a failover can lose the lock's release; a 300 s lock would strand lost acks' messages that long
    options = celery_config(load_settings({"SFSYNC_REDIS_URL": THREE}))["broker_transport_options"]

    assert options["unacked_mutex_expire"] <= options["visibility_timeout"]
