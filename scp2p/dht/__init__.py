"""The DHT: keyspace validation now; routing and lookups build on it."""
