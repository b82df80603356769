"""The dashboard at /colab/: plain static files (this folder) served behind Jupyter's auth."""

from .handler import dashboard_handlers

__all__ = ["dashboard_handlers"]
