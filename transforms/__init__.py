"""Transforms MONAI lacks, each with array and dictionary forms; MONAI's own are used where they exist.

``smoothing`` (Erosion Mask Smoothing), ``presence`` (image-level presence targets), ``postprocessing`` (presence
gate, minimum mask area, small-component removal).
"""
