"""What the configs name: workflow components, the data side (``data``) and the inference stack (``inference``).

``runs`` is the one way to a bundle run in this process (config stack plus overrides). Evaluation: ``inference``
(ASME, flip TTA, the accelerated path, PyTorch or OpenVINO), ``metrics``, ``plots``, ``tuning`` (the post-processing
grid search), ``active_learning`` (ASME-consistency scoring and ranking). Training: ``handlers`` (checkpoints and
resume, SWA, TensorBoard panels, the evaluation report), ``training`` (the trainer's batch), ``losses`` (MUNet's),
``logs`` (the run's log file), ``settings`` (start-up checks and the settings a checkpoint was trained with).
"""
