"""simplesockets' exceptions."""


class SetupError(Exception):
    """A call that needs setup() came before it."""
