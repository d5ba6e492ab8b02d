"""The notebook layer: live Markdown display, the ``%%chat``/``%chat`` magics and the chat panel.

Depends on the core and the store; never imports openai or httpx.
"""
