"""simplesockets' support module names (SetupError lives in .error)."""
