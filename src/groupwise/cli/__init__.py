"""The `groupwise` command line: typer commands over the same functions as the Python API."""
