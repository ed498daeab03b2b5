"""The server's secrets (SPEC §11): set ones are kept, unset ones are generated once and
kept under ``data_dir`` (owner-only), except for a memory server, which keeps nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from app.server_secrets import with_secrets
from app.settings import load_settings


def test_unset_secrets_are_generated_once_and_kept_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path}, environ={})
    first, again = with_secrets(settings), with_secrets(settings)
    assert first.token_secret and first.webhook_secret
    assert (first.token_secret, first.webhook_secret) == (again.token_secret, again.webhook_secret)
    assert (tmp_path / "token_secret").read_text() == first.token_secret
    assert stat.S_IMODE((tmp_path / "webhook_secret").stat().st_mode) == 0o600
    Webhook(first.webhook_secret)  # a key the Standard Webhooks library takes


def test_set_secrets_are_used_and_a_memory_server_writes_nothing(tmp_path: Path) -> None:
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    options = {"data_dir": tmp_path / "d", "database": "memory", "webhook_secret": secret}
    settings = with_secrets(load_settings(options, environ={}))
    assert settings.webhook_secret == secret and settings.token_secret
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("bad", ["abc", "whsec_", "whsec_!!!", "whsec_QUJD"])
def test_a_webhook_secret_must_be_whsec_and_a_base64_key(bad: str) -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        load_settings({"webhook_secret": bad}, environ={})
