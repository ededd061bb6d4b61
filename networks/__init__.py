"""Networks MONAI lacks and the helpers every network shares; MONAI's FlexibleUNet, BasicUNet and UNet++ are
configured in JSON.

Networks: ``munet`` (MUNet), ``unetplusplus`` (MONAI's UNet++ with one eval output, and the pneumothorax seed's
simplified UNet++), ``presence_gated`` (NerveCeg's presence classifier and two-stage model). Helpers: ``encoders``
(MONAI's encoder registry, local ImageNet weights), ``initialise`` (device, starting weights, batch-norm
momentum), ``batchnorm``, ``profile`` (parameters, FLOPs, latency).
"""
