"""Volume I/O, intensity normalization and synthetic CT."""
