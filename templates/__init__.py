"""ncood's Jinja2 LaTeX templates (shipped as package data)."""
