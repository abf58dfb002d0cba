"""Access to the worker's API and pages by role: credentials (``store``), rules (``roles``)."""
