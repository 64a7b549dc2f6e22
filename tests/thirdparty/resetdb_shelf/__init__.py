"""A third-party-like app: a data migration inserts rows with a foreign key, and the
next migration alters the table those rows are in, as many published apps do."""
