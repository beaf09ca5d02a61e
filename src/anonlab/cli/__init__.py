"""Command-line glue only: parse, compose, call the engine, exit."""
