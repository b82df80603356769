"""Running cloudflared: find it, build its command, read its logs, supervise it."""
