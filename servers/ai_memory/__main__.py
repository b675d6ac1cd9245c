"""`python -m servers.ai_memory`: serve the ai_memory tools on their own."""

from servers.ai_memory.server import create_server
from servers.runner import run_server

if __name__ == "__main__":
    run_server(create_server)
