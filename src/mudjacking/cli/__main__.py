"""``python -m mudjacking.cli``: the same as the ``mudjacking`` command."""

from mudjacking.cli import app

app()
