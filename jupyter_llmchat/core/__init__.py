"""The core: the conversation, its token budget and the one HTTP client.

Nothing here imports IPython, the store or the notebook layer; ``client`` is the only module
that talks HTTP (through the openai SDK, imported lazily).
"""
