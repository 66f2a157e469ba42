"""Operators see and steer: inspect/control (control.py, responder.py), Prometheus
(metrics.py), structured logs (logs.py)."""
