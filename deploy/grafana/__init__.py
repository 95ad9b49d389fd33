"""Grafana provisioning and the dashboard generator."""
