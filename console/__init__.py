"""The web console: where volunteers, experts and coordinators work."""
