"""The web side: helpdesk webhooks in (``inbound``), the API (``api``), health and metrics
(``ops``), and the helpdesk adapters (``helpdesks``) that also post alerts back out."""
