"""The package's lowest layer, imported by every other: ``files`` (atomic writes, state-dict reading) and
``class_logits`` (how a network passes image-level logits beside its mask)."""
