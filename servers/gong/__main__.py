"""`python -m servers.gong`: serve the gong tools on their own."""

from servers.gong.server import create_server
from servers.runner import run_server

if __name__ == "__main__":
    run_server(create_server)
