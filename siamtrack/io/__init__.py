"""Frame sources and output sinks (files, cameras); nothing here knows the network."""
