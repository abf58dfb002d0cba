"""The web page served by the workers (``hub.web.pages``), in Vietnamese and English."""
