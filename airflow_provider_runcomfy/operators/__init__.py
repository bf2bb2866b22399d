"""RunComfy operators."""
