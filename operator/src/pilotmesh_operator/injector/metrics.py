"""Prometheus metrics of the injector (registered on import, served on the metrics port)."""
from prometheus_client import Counter, Gauge, Histogram

ADMISSIONS = Counter("pilotmesh_injector_admissions_total", "Admission requests answered, by result and reason",
                     ["result", "reason"])
FAILURES = Counter("pilotmesh_injector_failures_total", "Admission requests that could not be answered normally",
                   ["kind"])
LATENCY = Histogram("pilotmesh_injector_admission_seconds", "Time to answer one admission request",
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
VERDICTS = Counter("pilotmesh_injector_transport_verdicts_total", "NetworkPolicy transport verdicts",
                   ["verdict", "confidence"])
CERT_EXPIRY = Gauge("pilotmesh_injector_certificate_expiry_timestamp_seconds",
                    "Unix time at which the serving certificate expires")
