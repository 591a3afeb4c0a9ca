"""`python -m leadrank` runs the CLI (also under torchrun: `torchrun --nproc_per_node=N -m leadrank train ...`)."""

from leadrank.cli import app

app(prog_name="leadrank")
