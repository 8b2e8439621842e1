"""The database: tables, connections and versioned migrations."""
