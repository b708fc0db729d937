"""WSGI entry point: ``waitress-serve --call wsgi:create_app`` or ``wsgi:app``."""
from archiver import create_app

app = create_app()
