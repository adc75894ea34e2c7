"""medssl: self-supervised pre-training for 2D and 3D medical images, fine-tuning, and studies."""

__version__ = "0.1.0"
