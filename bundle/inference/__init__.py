"""The inference stack the evaluate and inference configs name: the inferers, the fast path under them, the backend.

``inferers`` (ASME and flip TTA, in MONAI's ``Inferer`` API) over the maths of ``ensemble``; ``accelerated`` (the
fast path over any inferer: channels-last, reduced precision) runs the network on the backend ``backends`` chooses,
PyTorch or OpenVINO (compiled by ``openvino_models``), whose converted models ``openvino_cache`` keeps beside the
checkpoint; ``quantization`` makes and checks their int8 versions (``nerveseg quantize``). ``streaming`` runs the
same steps on one video frame at a time (``nerveseg live``).
"""
