"""The one error type for user mistakes; the CLI prints it as a single line."""


class MedsslError(Exception):
    """A problem with the user's input (data, options, checkpoints), not a bug in medssl."""
