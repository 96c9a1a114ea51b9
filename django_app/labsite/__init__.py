"""The Django project of wsgi-lab: settings, root URLconf and the WSGI entry point."""
