"""The staff page: every dossier at a glance, its timeline, and the steps a person confirms."""
