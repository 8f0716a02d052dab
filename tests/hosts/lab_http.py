"""The suite's HTTP client for the lab's TLS services: the lab CA alone, whatever the environment says."""

from __future__ import annotations

import requests


def lab_ca_session(ca_file: str) -> requests.Session:
    session = requests.Session()
    session.verify = ca_file
    # requests puts REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set to the system store on many machines) above a
    # Session's own verify; a lab host is reached on the lab network, never through a proxy: nothing from the env.
    session.trust_env = False
    return session
