"""Infrastructure the steps use: MySQL, files and block copies, hosts (and the recording host of `upgrade
plan`), unit control, INI edits, charsets, the claim and identity of the controllers, the step context."""
