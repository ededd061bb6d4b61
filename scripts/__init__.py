"""The ``nerveseg`` command line (built with fire, ``cli``): thin wrappers over functions of the packages, plus the
benchmark runs (``benchmarks``) and progressive resizing (``progressive``)."""
