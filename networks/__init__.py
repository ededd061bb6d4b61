"""Networks and network helpers that MONAI lacks; MONAI's FlexibleUNet and BasicUNet are configured in JSON."""
