"""The lab endpoints, as an ordinary Django app."""
