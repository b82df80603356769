"""What tests/ and benchmarks/ share: the two stand-ins (cloudflared, NVML), a headless
Chromium driver and process helpers. Not part of the wheel."""
