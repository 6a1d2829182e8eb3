"""The dashboard page and the control endpoints."""
