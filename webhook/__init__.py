"""Helpdesk webhooks in and alerts out (issue 4; empty so far)."""
