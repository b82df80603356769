"""`python -m jupyter_colab_tunnel.launcher ...`: the same as `jupyter colab-tunnel ...`."""

import sys

from .cli import main

sys.exit(main())
