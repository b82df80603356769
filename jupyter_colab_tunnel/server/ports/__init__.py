"""The remote's web ports: which ones listen (`/colab/ports`), which may be forwarded, and the
route that forwards them (`/colab/forward/<port>/...`)."""
