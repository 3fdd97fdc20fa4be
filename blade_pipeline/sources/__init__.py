"""Readers of each source kind (Databricks, PostgreSQL, MySQL, CSV drops) and the SQL sent
to them."""
