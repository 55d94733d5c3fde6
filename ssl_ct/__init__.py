"""ssl_ct: self-supervised sample localization in 3D tomographic volumes."""

__version__ = "0.1.0"
