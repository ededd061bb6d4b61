"""The data side: everything between the user's files and a datalist, and back to files.

Reading: ``io`` (images, masks, DICOM), ``layouts`` (the dataset layouts ``prepare`` reads: nerve challenge,
pneumothorax, image/mask folders), ``rle`` (the challenges' run-length codecs). Datalists: ``datalist`` (pairs,
the subject-held-out validation), ``checks`` (file checks, recorded so that unchanged files are not read again),
``splits`` (test subjects, folds, balancing), ``duplicates``, ``prepare`` (``nerveseg prepare``). Writing:
``writers`` (mask images), ``submissions`` (challenge CSVs). ``synthetic``: the Quick start's generated dataset,
used only where a config names it.
"""
