"""The package version, defined once (read by hatchling and at run time)."""

__version__ = "0.1.0"
