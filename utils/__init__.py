"""The package's lowest layer, imported by every other: ``files`` (atomic writes, state-dict reading),
``class_logits`` (how a network passes image-level logits beside its mask) and ``errors`` (``UserInputError``: a
user's mistake, told in a run's last line)."""
