"""Post-incident output: the terminal timeline, Markdown/HTML reports, JSON exports."""
