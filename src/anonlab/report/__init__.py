"""Reports read the results store only (never the engine): tables for the terminal and Markdown."""
