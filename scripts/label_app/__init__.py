"""The MONAI Label app of the bundle: serve and train it for annotators, propose images by ASME consistency.

:mod:`.layout` (no MONAI Label needed) lays out an app folder and builds the ``monailabel start_server`` command;
:mod:`.app`, :mod:`.tasks`, :mod:`.datastore` and :mod:`.active_learning` need the ``label`` extra
(``pip install -e ".[label]"``), and ``main.py`` is the file MONAI Label loads from the app folder.
"""
