"""Play a Genie world in the browser: ``genie play MODEL``.

:func:`create_app` builds the FastAPI app (protocol, limits and validation are
documented in :mod:`genieworld.play.server`; sessions and the pending-action queue
in :mod:`genieworld.play.sessions`); :func:`serve` runs it with uvicorn.
"""

from genieworld.play.server import PlayConfig, create_app, serve

__all__ = ["PlayConfig", "create_app", "serve"]
