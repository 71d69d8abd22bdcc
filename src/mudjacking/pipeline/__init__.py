"""One pipeline for the demos and the experiments: a setting builds an attacked deployment (``scenario``), ``run``
recovers the trigger, runs the defences and scores every model on every customer's task."""
