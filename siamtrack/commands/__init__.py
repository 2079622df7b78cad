"""click commands, one module each (loaded lazily by `siamtrack.cli`)."""
