"""The contest in a browser: pages, templates and static files."""
