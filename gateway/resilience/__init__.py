"""Circuit breakers, timeouts, retries, bulkheads and the shared result cache around backend calls."""
