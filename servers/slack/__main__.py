"""`python -m servers.slack`: serve the slack tools on their own."""

from servers.slack.server import create_server
from servers.runner import run_server

if __name__ == "__main__":
    run_server(create_server)
