"""Transforms that MONAI lacks, each with array and dictionary forms; MONAI's own are used where they exist."""
