"""WSGI entry point: gunicorn wsgi:app, flask --app wsgi ..."""

from mp_backend import create_app

app = create_app()
