"""What the bot sends: which purpose, to whom, in which language, through the outbox."""
