"""Training recipes for the shipped models (run by ``churnsignal train ...``)."""
