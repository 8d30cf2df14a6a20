"""The report stage: figures and tables from analysed runs, rendered through Jinja2 into LaTeX."""
