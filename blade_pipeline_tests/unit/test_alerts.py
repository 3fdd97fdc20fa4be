"""Alert delivery failures name the channel, never its secret; unconfigured is off."""

import pytest

from blade_pipeline.alerts import Alert, AlertError, AlertSender

ALERT = Alert(title="[supply] blade_supply_job failed for 2026-06-29", data_type="supply",
              days="2026-06-29", run_id="0123456789abcdef", run_url="http://ui/runs/0123",
              cause="[supply] catalog refused the token", action="re-run")


def test_an_undeliverable_alert_names_the_channels_but_not_the_secrets():
    sender = AlertSender(webhook_url="http://127.0.0.1:9/hooks/T00/B00/s3cr3t-path",
                         smtp_host="127.0.0.1", smtp_port=9, smtp_to="ops@example.org",
                         smtp_user="bot", smtp_password="mail-pa55", timeout_s=1.0)
    with pytest.raises(AlertError) as caught:
        sender.send(ALERT)
    message = str(caught.value)
    assert "webhook: ConnectError" in message and "email via 127.0.0.1:9" in message
    assert "s3cr3t-path" not in message and "mail-pa55" not in message
    assert "s3cr3t-path" not in repr(sender) and "mail-pa55" not in repr(sender)


def test_unconfigured_means_off():
    assert not AlertSender().enabled and AlertSender().channels() == []


def test_the_generic_body_holds_what_a_person_needs():
    body = ALERT.as_json()
    assert {"data_type", "days", "run_url", "cause", "action", "title", "kind"} <= set(body)
    assert ALERT.as_slack()["text"].startswith(ALERT.title)
