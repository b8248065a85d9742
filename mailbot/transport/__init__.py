"""Talking to mail servers: the IMAP watcher, the SMTP sender and the local sandbox servers."""
