"""The services the tool upgrades: one module (or package) each, exporting its ``ServiceSpec`` as ``SPEC``
(``services/spec.py``); ``services/registry.py`` finds them. ``docs/adding-a-service.md`` says how to add one."""
