"""The file MONAI Label loads from an app folder: it starts the first ``MONAILabelApp`` subclass found here.

``nerveseg label-app`` copies this file into the app folder it lays out; the app itself is
:class:`nerveseg.scripts.label_app.app.NervesegApp`.
"""

from nerveseg.scripts.label_app.app import NervesegApp  # noqa: F401
