"""Celery tasks: analyse, score and alert, fed by the webhook store (issue 4; empty so far)."""
