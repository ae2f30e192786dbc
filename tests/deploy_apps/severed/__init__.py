"""A migration whose database connection is cut under it (PostgreSQL): it creates a table
(not atomic, so the table stays), records its backend's pid, waits to be told the backend is
gone, then uses the connection again.
"""
