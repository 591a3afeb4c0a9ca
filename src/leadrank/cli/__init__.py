"""The ``leadrank`` command line: thin verbs over the library, one module per verb family.

- ``data``: synth, validate, describe, split, spec infer;
- ``model``: train, score, evaluate, explain;
- ``service``: serve;
- ``bench``: report, bench, demo;
- ``abtest``: the A/B verbs; ``registry``: retrain, versions, rollback.

``_common`` holds the app, the error boundary (exit codes in :mod:`leadrank.errors`) and the
shared options; ``_render`` the tables verbs print. Importing this package registers every verb.
"""

# ruff: noqa: I001  (the import order below is the order `leadrank --help` lists the verbs in)
from leadrank.cli._common import app
from leadrank.cli import data, model, service, bench, abtest, registry  # noqa: F401  (importing them registers their verbs)

__all__ = ["app"]
