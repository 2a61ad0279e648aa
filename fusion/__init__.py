"""Fusion of text and purchase signals into a calibrated churn risk (issue 3; empty so far)."""
