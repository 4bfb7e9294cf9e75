"""Start-up lines show the settings without their secrets, for every process."""

from __future__ import annotations

import logging

import pytest

from consumer.settings import WorkerSettings
from core.secrets import masked
from producer_api.settings import ApiSettings


def test_passwords_in_urls_and_secret_fields_are_hidden() -> None:
    api = masked(ApiSettings(
        worker_metrics_urls="http://scraper:s3cret@w1:9101/metrics,http://w2:9102/metrics"))
    assert api["worker_metrics_urls"] == ("http://scraper:***@w1:9101/metrics,"
                                          "http://w2:9102/metrics")
    assert "s3cret" not in repr(api)

    worker = masked(WorkerSettings(redis_url="redis://:hunter2@cache.internal:6380/0"))
    assert worker["redis_url"] == "redis://:***@cache.internal:6380/0"

    class WithSecrets(WorkerSettings):
        sasl_plain_password: str = "hunter2"
        api_key: str = "hunter2"

    logged = masked(WithSecrets())
    assert logged["sasl_plain_password"] == logged["api_key"] == "***"
    assert "hunter2" not in repr(logged)
    assert logged["bootstrap_servers"] == "127.0.0.1:9092", "the rest is shown as it is"
    shown = masked(ApiSettings(keys_refresh_s=3.0))
    assert shown["keys_refresh_s"] == 3.0, "a word of a name, not a part of a word"


def test_the_kafka_credentials_never_reach_a_start_up_line(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = WorkerSettings(security_protocol="SASL_SSL", sasl_username="worker",
                              sasl_password="hunter2-sasl", ssl_key_password="hunter2-key",
                              redis_url="redis://:hunter2-redis@cache:6379/0")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("consumer.worker").info("worker starting with %s", masked(settings))
    assert "worker starting" in caplog.text and "'sasl_username': 'worker'" in caplog.text
    assert "hunter2" not in caplog.text
    options = settings.connection_options()  # the secret is only ever handed to the client
    assert options["sasl_plain_password"] == "hunter2-sasl"
