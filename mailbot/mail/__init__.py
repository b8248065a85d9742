"""Reading mail: parsing, subject lines, attachments and documents, message kinds."""
