"""RunComfy sensors."""
