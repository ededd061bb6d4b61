"""Workflow components the configs name, and the data side (``data``).

Training: ``handlers`` (checkpoints and resume, SWA, TensorBoard panels, the evaluation report), ``losses``
(MUNet's), ``schedules``, ``logs``. Inference and evaluation: ``inferers`` (ASME, flip TTA) over the maths of
``ensemble``, ``metrics``, ``plots``, ``tuning`` (post-processing search), ``submissions`` and ``rle`` (the
challenges' run-length codecs); ``files`` writes result files atomically.
"""
