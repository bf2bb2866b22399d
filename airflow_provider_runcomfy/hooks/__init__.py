"""RunComfy hooks."""
