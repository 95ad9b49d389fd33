"""Deployment files; Python here only generates them (see grafana/build_dashboards.py)."""
