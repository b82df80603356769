"""The parts of the cloudflared stand-in; `testkit.fake_cloudflared` runs them."""
