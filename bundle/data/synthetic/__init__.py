"""Deterministic synthetic ultrasound-nerve dataset, shaped like the public brachial-plexus challenge: the Quick
start's data, named explicitly by ``configs/quickstart.json``.

The bundle trains end to end on it with no real data. The output mimics the challenge's layout and statistics:

* ``train/{subject}_{frame}.tif`` and ``train/{subject}_{frame}_mask.tif`` (subjects ``1..S``, frames ``1..F``) and
  ``test/{id}.tif`` (ids ``1..N``, no masks); 8-bit grayscale (PIL mode ``"L"``) uncompressed TIFF, 580 wide x 420
  high by default; masks are 0/255.
* About 41% of the frames contain a nerve, with a per-subject positive rate spread widely (a Beta distribution), the
  nerve present in contiguous runs of frames; nerve areas 2,900-16,500 px (median about 7,000) at 420 x 580, one
  connected component with a smooth irregular outline.
* Consecutive frames of a subject are near-identical (the whole anatomy drifts slowly, the speckle changes a little).
* About one subject in 3-4 holds a conflicting exact duplicate: a frame at the edge of a nerve run appears twice,
  once with its mask and once with an empty mask.

Images are B-mode-like: two-look compounded speckle (complex Gaussian fields smoothed anisotropically, grains
elongated horizontally, log-compressed), depth attenuation, a bright skin layer, wavy hyperechoic fascia,
striated muscle, an anechoic artery with posterior enhancement, and the nerve, a hyperechoic oval holding several
hypoechoic fascicles (the "honeycomb"), next to the artery. Decoys make the task non-trivial: dark veins, rimmed dark
ovals and bright blobs without fascicles (in some subjects at the nerve's own place in the negative frames), and nerve
contrast that varies per subject and fades at the edges of a run.

Everything is drawn with vectorised numpy/scipy operations; subject ``k`` uses ``numpy.random.default_rng([seed, 0,
k])`` and low-discrepancy sequences indexed by ``k``, so a subject's frames do not depend on how many subjects are
generated. Each step draws from the subject's stream in a fixed order: changing that order, or any drawn quantity,
changes the files, and then :data:`SYNTHETIC_VERSION` must be bumped.

Modules, in the order a subject is drawn:

* ``subject_sampling``: random-stream keys, the positive-rate, duplicate and size quantiles, nerve presence runs.
* ``canvas``: frame/canvas sizes relative to :data:`IMAGE_SHAPE`, the probe's drift, sub-pixel crops.
* ``noise_fields``: smooth fields and series, wavy curves, anisotropically filtered noise.
* ``tissue_layers``: skin, fat, muscle, fascia and the bone shadow.
* ``outlines``: star-shaped outlines, their soft coverage, non-overlapping placement.
* ``blobs``: the artery, vein and decoys, placed around the nerve and painted into the tissue.
* ``nerve``: the nerve's outlines, fascicles and contrast, and painting it (and its mask) into a frame.
* ``bmode``: speckle, attenuation, gain and compression into 8-bit pixels.
* ``subject_simulation``: one subject's scene and its frames.
* ``generator``: :func:`generate_dataset` (files, ``dataset.json``, atomic publication) and
  :func:`default_dataset_dir`.

Example::

    from nerveseg.bundle.data.synthetic import default_dataset_dir, generate_dataset

    root = default_dataset_dir()  # cached 16 x 30 frames at 420 x 580, generated on first use (about 7 s)
    tiny = generate_dataset("/tmp/nerve-tiny", num_subjects=4, frames_per_subject=8, image_shape=(64, 96))
"""

from nerveseg.bundle.data.synthetic.canvas import IMAGE_SHAPE
from nerveseg.bundle.data.synthetic.generator import SYNTHETIC_VERSION, default_dataset_dir, generate_dataset

__all__ = ["IMAGE_SHAPE", "SYNTHETIC_VERSION", "default_dataset_dir", "generate_dataset"]
