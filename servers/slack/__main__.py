"""`python -m servers.slack`: serve the slack tools on their own."""

from servers.runner import run_server
from servers.slack.server import create_server

if __name__ == "__main__":
    run_server(create_server)
