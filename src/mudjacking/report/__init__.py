"""Reports: JSON (see ``mudjacking.outputs``) and pictures."""

from mudjacking.report.plots import plot_before_after, plot_trigger_heatmap

__all__ = ["plot_before_after", "plot_trigger_heatmap"]
