"""The scoring service: a FastAPI app over one model directory (``leadrank serve``).

``POST /score`` and ``POST /explain`` take leads as JSON, ``GET /health`` and ``GET /model``
report on the service; :mod:`~leadrank.serve.app` lists the endpoints. The package keeps one
job per module: :mod:`.settings` (:class:`ServeSettings`, the token variable), :mod:`.schemas`
(the JSON taken and given), :mod:`.worker` (the micro-batching scorer thread), :mod:`.errors`
(guards and error bodies) and :mod:`.app` (the app, its routes, and running it with uvicorn).
"""

from leadrank.serve.app import app_from_env, create_app, run
from leadrank.settings import TOKEN_ENV, ServeSettings

__all__ = ["TOKEN_ENV", "ServeSettings", "app_from_env", "create_app", "run"]
