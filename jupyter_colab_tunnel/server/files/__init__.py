"""Files up and down through the tunnel: the remote's `/colab/files/<path>` route.

`store` (the root and its path rules, blocking disk calls), `hashes` (sha256 kept between the
pieces of a transfer), `service` (stat, list, commit, mkdir, off the loop), `upload` (one PUT
into its partial file), `handler` (HTTP). The local side's `cp` lives in local/files/.
"""
