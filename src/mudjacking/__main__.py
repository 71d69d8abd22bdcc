"""``python -m mudjacking`` (and ``accelerate launch -m mudjacking patch ...``): the ``mudjacking`` command."""

from mudjacking.cli import app

app()
