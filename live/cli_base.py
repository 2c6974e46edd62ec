"""What every `live` subcommand module shares (live/cli.py and those it delegates to)."""


class CliError(Exception):
    """A failure worth one line on stderr and a non-zero exit."""
