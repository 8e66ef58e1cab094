"""Pure functions: Kubernetes objects as dicts in, dicts or verdicts out; no API calls, no I/O."""
