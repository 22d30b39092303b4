"""The client side: a Python client of the API and the CLI commands data teams run.

Nothing here imports the server: a data team's machine needs only this package.
"""

from offpeak.client.http import OffpeakClient

__all__ = ["OffpeakClient"]
