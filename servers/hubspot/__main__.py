"""`python -m servers.hubspot`: serve the hubspot tools on their own."""

from servers.hubspot.server import create_server
from servers.runner import run_server

if __name__ == "__main__":
    run_server(create_server)
