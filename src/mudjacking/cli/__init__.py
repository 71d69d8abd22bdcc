"""The ``mudjacking`` command line: one module per command, each parsing its options and calling one public
function; importing this package registers them all on ``app``."""

from mudjacking.cli import apply, attack, demo, evaluate, experiment, patch, reverse_trigger, verify  # noqa: F401  (registers)
from mudjacking.cli.common import app

__all__ = ["app"]
