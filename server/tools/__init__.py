"""Developer tools run from scripts/ (simulators, one-off utilities); not imported by the server."""
