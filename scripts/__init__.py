"""The ``nerveseg`` command line (``cli``, built with fire): thin commands over the packages' functions, plus
``progressive`` (progressive resizing), ``bench`` (one module per benchmark part) and ``label_app`` (MONAI Label)."""
