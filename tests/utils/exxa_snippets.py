"""The code snippets of EXXA's getting-started page, verbatim, and how tests run them.

Tests run them as written; only the base URL and the placeholder ids are replaced.
"""

import ast
import os
import subprocess
import sys
from typing import Any

BASE_URL = "https://api.withexxa.com/v1"


def run_snippet(base_url: str, key: str, code: str, **ids: str) -> list[str]:
    """Run a snippet in its own Python process with EXXA_API_KEY set; its printed lines."""
    code = code.replace(BASE_URL, f"{base_url}/v1")
    for placeholder, value in ids.items():
        assert placeholder in code, placeholder
        code = code.replace(placeholder, value)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "EXXA_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def printed(line: str) -> dict[str, Any]:
    """The dict a snippet printed with print(response.json())."""
    value: dict[str, Any] = ast.literal_eval(line)
    return value


SEND_REQUEST = """import requests
import os

api_key = os.environ["EXXA_API_KEY"]
url = "https://api.withexxa.com/v1/requests"
headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
payload = {
"request_body": {
"model": "llama-3.1-70b-instruct-fp16",
"messages": [{"role": "user", "content": "Your query here"}],
}
}

response = requests.post(url, headers=headers, json=payload)
print(response.json())
"""

CREATE_BATCH = """import requests
import os

api_key = os.environ["EXXA_API_KEY"]
url = "https://api.withexxa.com/v1/batches"
headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
payload = {
"requests_ids": ["request_id1", "request_id2"],
"metadata": {"batch_name": "MyFirstBatch"}
}

response = requests.post(url, headers=headers, json=payload)
print(response.json())
"""

BATCH_STATUS = """import requests
import os

api_key = os.environ["EXXA_API_KEY"]
batch_id = 'batch_id_here'
url = f"https://api.withexxa.com/v1/batches/{batch_id}/status"
headers = {"X-API-Key": api_key}

response = requests.get(url, headers=headers)
print(response.json())
"""

REQUEST_STATUS = """import requests
import os

api_key = os.environ["EXXA_API_KEY"]
request_id = 'request_id_here'
url = f"https://api.withexxa.com/v1/requests/{request_id}/status"
headers = {"X-API-Key": api_key}

response = requests.get(url, headers=headers)
print(response.json())
"""

BATCH_RESULTS = """import requests
import os

api_key = os.environ["EXXA_API_KEY"]
batch_id = 'batch_id_here'
url = f"https://api.withexxa.com/v1/batches/{batch_id}/results"
headers = {"X-API-Key": api_key}

response = requests.get(url, headers=headers)
print(response.text)

# You could also iterate over the response to get the result of each request
# for line in response.iter_lines():
# result = json.loads(line)
# print(result)
"""

CANCEL = """import requests
import os

api_key = os.environ["EXXA_API_KEY"]
headers = {"X-API-Key": api_key}

# Cancel a batch
batch_id = 'batch_id_here'
url = f"https://api.withexxa.com/v1/batches/{batch_id}/cancel"
response = requests.post(url, headers=headers)
print(response.json())

# Cancel an individual request
request_id = 'request_id_here'
url = f"https://api.withexxa.com/v1/batches/{request_id}/cancel"
response = requests.post(url, headers=headers)
print(response.json())
"""
