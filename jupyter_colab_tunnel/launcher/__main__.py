"""`python -m jupyter_colab_tunnel.launcher ...`: the same as `jupyter colab-tunnel ...`.

Kept where the root is no longer: `launch` tells how to stop a server of another Python
environment with this command, which that environment's version (older, perhaps) also has.
"""

import sys

from ..cli import main

sys.exit(main())
