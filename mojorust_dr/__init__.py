"""mojorust.dr drill runner and reports (the `mojorust-dr` command)."""
