"""Celery workers: analyse stored events, score their customers, decide and deliver alerts.

``app`` configures Celery, ``tasks`` are thin wrappers, ``pipeline`` and ``alerting`` hold the
logic as plain functions that tests call without a broker.
"""
