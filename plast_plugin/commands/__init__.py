"""The ``plast`` subcommands, one module each (``plast_plugin.cli`` registers them)."""
