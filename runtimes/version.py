"""The edgeseg version, recorded in checkpoints and in every artifact's ModelMeta."""

__version__ = "0.1.0"
