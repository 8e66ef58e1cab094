"""The sidecar injector: an HTTPS admission webhook around the pure `render.inject` function."""
