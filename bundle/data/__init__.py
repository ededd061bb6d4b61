"""The data side: readers (``io``, ``formats``), checks and datalists (``datalist``), duplicate cleaning
(``duplicates``), subject-grouped splits (``splits``), ``nerveseg prepare`` (``prepare``), the synthetic default
data (``synthetic``) and image writers (``writers``)."""
