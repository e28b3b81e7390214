"""The report of a run: its record, tables, plots, and the HTML and Markdown pages."""
