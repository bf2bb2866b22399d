"""RunComfy triggers."""
