"""Dossiers: matching a mail to a client project, the process's steps, events and deadlines."""
