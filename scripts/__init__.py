"""The ``nerveseg`` command line (built with fire): thin wrappers over functions of the packages."""
