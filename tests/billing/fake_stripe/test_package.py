"""The fake Stripe package stands on its own: no module imports ``stripe``, it pins the SDK's API version, and
``python -m copilot_site.testing.fake_stripe`` serves the API in the foreground."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import stripe

import copilot_site.testing.fake_stripe as fake_stripe_package
from copilot_site.core.embedded_redis import free_port
from copilot_site.testing.fake_stripe import sign_payload
from copilot_site.testing.fake_stripe.store import API_VERSION
from tests.billing.fake_stripe.conftest import API_KEY, WEBHOOK_SECRET, construct_event

PACKAGE_DIR = Path(fake_stripe_package.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_of_the_fake_imports_stripe() -> None:
    modules = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(modules) >= 20  # the scan really looked at the package
    offenders = {
        path.name: sorted(name for name in _imported_modules(path) if name == "stripe" or name.startswith("stripe."))
        for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_pinned_api_version_is_the_sdks() -> None:
    assert stripe.api_version == API_VERSION


def test_its_own_signature_is_the_one_the_sdk_verifies() -> None:
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "ping"})
    header = sign_payload(payload, WEBHOOK_SECRET, timestamp=1_700_000_000)
    expected = stripe.WebhookSignature._compute_signature(f"1700000000.{payload}", WEBHOOK_SECRET)
    assert header == f"t=1700000000,v1={expected}"
    fresh = sign_payload(payload, WEBHOOK_SECRET)
    assert construct_event(payload, fresh, WEBHOOK_SECRET).id == "evt_1"


def _wait_healthy(base_url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the fake exited early with {process.returncode}"
        try:
            with urllib.request.urlopen(f"{base_url}/_fake/health", timeout=2) as response:  # noqa: S310 - loopback
                if json.load(response) == {"ok": True}:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"the fake did not answer on {base_url} within {timeout}s"
        time.sleep(0.05)


def test_python_dash_m_serves_the_api_in_the_foreground() -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "copilot_site.testing.fake_stripe", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--seed-price", "pro:2000", "--seed-price", "pack:500:one_time"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(base_url, process)
        client = stripe.StripeClient(API_KEY, base_addresses={"api": base_url}, max_network_retries=0)
        pro = client.v1.prices.list({"lookup_keys": ["pro"]}).data
        customer = client.v1.customers.create({"email": "dash-m@example.com"})
        assert client.v1.customers.retrieve(customer.id).email == "dash-m@example.com"
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    assert [(p.unit_amount, p.recurring.interval if p.recurring else None) for p in pro] == [(2000, "month")]
    lines = stdout.splitlines()
    assert lines[0] == f"seeded price pro: {pro[0].id} (2000 cents / month)"
    assert lines[1].startswith("seeded price pack: price_") and lines[1].endswith(" (500 cents / one time)")
    assert lines[2:] == [f"Fake Stripe API listening on {base_url} (STRIPE_API_BASE={base_url})"]
    assert stderr == ""  # requests are not logged without --log-requests
    assert process.returncode == -signal.SIGTERM


def test_python_dash_m_refuses_bad_arguments() -> None:
    module = [sys.executable, "-m", "copilot_site.testing.fake_stripe", "--port", "0"]
    bad_seed = subprocess.run([*module, "--seed-price", "pro"], capture_output=True, text=True, timeout=60)
    no_secret = subprocess.run(
        [*module, "--webhook-url", "http://127.0.0.1:1/hook"], capture_output=True, text=True, timeout=60
    )
    assert (bad_seed.returncode, bad_seed.stdout) == (2, "")
    assert bad_seed.stderr.splitlines()[-1].endswith(
        "argument --seed-price: --seed-price expects LOOKUP:CENTS[:INTERVAL], got 'pro'"
    )
    assert (no_secret.returncode, no_secret.stdout) == (2, "")
    assert no_secret.stderr.splitlines()[-1].endswith("error: --webhook-secret is required with --webhook-url")
