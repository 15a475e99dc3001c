"""The shared step library: the runbook's generic steps (stop, back up, dump, config, import, schema and
status commands, ownership, start, verify) that every service's module assembles with its own."""
