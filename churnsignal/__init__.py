"""churnsignal: service-experience churn alerts for Chinese-language helpdesks."""

__version__ = "0.1.0"
