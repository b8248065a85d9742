"""Storage: SQLModel tables, the database session, Alembic migrations."""
