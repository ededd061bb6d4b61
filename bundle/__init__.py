"""What the configs name: workflow components, and the data side (``data``).

Inference and evaluation: ``inferers`` (ASME, flip TTA, the accelerated path) over the maths of ``ensemble``,
``metrics``, ``plots``, ``tuning`` (the post-processing grid search), ``active_learning`` (ASME-consistency
scoring and ranking). Training: ``handlers`` (checkpoints and resume, SWA, TensorBoard panels, the evaluation
report), ``losses`` (MUNet's), ``logs`` (the run's log file).
"""
