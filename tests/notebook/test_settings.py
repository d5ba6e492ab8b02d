"""The settings table and ChatMagics agree: every setting is a configurable trait, every trait
but ``preload`` has an environment variable, and the groups name settings that exist."""

from __future__ import annotations

from jupyter_llmchat.notebook.magics import ChatMagics
from jupyter_llmchat.notebook.settings import CLIENT_SETTINGS, ENV_VARS, REQUEST_SETTINGS, SESSION_SETTINGS


def test_every_setting_is_a_configurable_trait_with_one_variable() -> None:
    configurable = set(ChatMagics.class_trait_names(config=True))
    assert configurable - set(ENV_VARS) == {"preload"}  # read once at %load_ext: no variable
    assert set(ENV_VARS) <= configurable
    assert len(set(ENV_VARS.values())) == len(ENV_VARS)
    assert set(CLIENT_SETTINGS) | set(SESSION_SETTINGS) <= set(ENV_VARS)
    assert set(REQUEST_SETTINGS) <= set(SESSION_SETTINGS)
