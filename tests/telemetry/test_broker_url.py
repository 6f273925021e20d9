"""The one broker URL parser: defaults, credentials, errors, and a password that never shows."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.redact import redact
from app.telemetry.broker_url import BrokerAddress, parse_broker_url


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("mqtt://broker.local", BrokerAddress("mqtt", "broker.local", 1883)),
        ("mqtts://broker.local", BrokerAddress("mqtts", "broker.local", 8883)),
        ("mqtt://10.0.0.5:1884", BrokerAddress("mqtt", "10.0.0.5", 1884)),
        ("mqtts://cam-1@b:8884", BrokerAddress("mqtts", "b", 8884, "cam-1")),
        ("mqtt://u%40x:p%3Aw%2F@[::1]:1883", BrokerAddress("mqtt", "::1", 1883, "u@x", "p:w/")),
    ],
)
def test_parses_scheme_host_port_and_credentials(url: str, want: BrokerAddress) -> None:
    got = parse_broker_url(url)
    assert got == want
    assert got.tls is (want.scheme == "mqtts")


def test_password_is_in_the_value_but_not_in_repr_str_or_errors() -> None:
    addr = parse_broker_url("mqtts://cam-1:s3cret@broker.local")
    assert addr.password == "s3cret"
    assert "s3cret" not in repr(addr) and "s3cret" not in str(addr)
    assert str(addr) == "mqtts://cam-1:***@broker.local:8883"
    assert str(parse_broker_url("mqtt://[::1]")) == "mqtt://[::1]:1883"
    with pytest.raises(ConfigError) as err:
        parse_broker_url("http://cam-1:s3cret@broker.local", "mqtt.url")
    assert "s3cret" not in str(err.value) and "cam-1:***@broker.local" in str(err.value)
    assert redact("mqtt://u:p@ss@h:1/x") == "mqtt://u:***@h:1/x"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://broker.local", "expected mqtt://host"),
        ("tcp://broker.local:1883", "expected mqtt://host"),
        ("broker.local:1883", "expected mqtt://host"),
        ("mqtt://", "expected mqtt://host"),
        ("mqtt://broker.local:99999", "1-65535"),
        ("mqtt://broker.local:abc", "abc"),
        ("mqtt://broker.local:0", "1-65535"),
    ],
)
def test_bad_urls_give_one_line_naming_the_setting(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as err:
        parse_broker_url(url, "--broker")
    msg = str(err.value)
    assert msg.startswith(f"--broker {url!r}") and "\n" not in msg
