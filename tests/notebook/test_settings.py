"""The settings table and ChatMagics agree: every setting is a configurable trait, every trait
but ``preload`` has an environment variable, and the groups name settings that exist."""

from __future__ import annotations

from jupyter_llmchat.notebook.magics import ChatMagics
from jupyter_llmchat.notebook.settings import CLIENT_SETTINGS, ENV_VARS, REQUEST_SETTINGS, SESSION_SETTINGS


def test_every_setting_is_a_configurable_trait_with_one_variable() -> None:
    configurable = set(ChatMagics.class_trait_names(config=True))
    # preload is read once at %load_ext; models is a table of entries set with %config: no variable
    assert configurable - set(ENV_VARS) == {"preload", "models"}
    assert set(ENV_VARS) <= configurable
    assert len(set(ENV_VARS.values())) == len(ENV_VARS)
    assert set(CLIENT_SETTINGS) | set(SESSION_SETTINGS) <= set(ENV_VARS)
    assert set(REQUEST_SETTINGS) <= set(SESSION_SETTINGS)


def test_the_key_trait_holds_a_hidden_key_the_text_is_the_key_the_repr_never() -> None:
    import copy

    from traitlets import HasTraits

    from jupyter_llmchat.notebook.settings import HiddenKey, SecretUnicode

    class Holder(HasTraits):
        key = SecretUnicode(None, allow_none=True)

    holder = Holder(key="sk-unit-secret-42")
    assert isinstance(holder.key, HiddenKey) and holder.key == "sk-unit-secret-42"
    assert (str(holder.key), f"{holder.key}", "".join([holder.key])) == ("sk-unit-secret-42",) * 3  # what is sent
    assert type(str(holder.key)) is str
    for shown in (repr(holder.key), repr([holder.key]), repr({"k": holder.key}), repr(holder.trait_values()),
                  repr(copy.deepcopy({"k": holder.key}))):
        assert "sk-unit" not in shown and "<api key hidden>" in shown, shown
    holder.key = None
    assert holder.key is None
    assert isinstance(ChatMagics.class_traits()["api_key"], SecretUnicode)
