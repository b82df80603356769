"""What runs inside the remote Jupyter server: the extension (app, its settings and handlers),
status, metrics, kernels, the runtime's life, the dashboard, the forwarded ports and the files
route. Started by Jupyter Server through `_jupyter_server_extension_points` (../__init__.py)."""
