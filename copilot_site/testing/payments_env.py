"""The environment of a web process with payments and credits on against the fake Stripe."""

from __future__ import annotations

from copilot_site.testing.fake_stripe import FakeStripeServer


def payments_env(live_env: dict[str, str], *, base_url: str, stripe: FakeStripeServer, secret: str) -> dict[str, str]:
    """`live_env` plus what a daphne at `base_url` needs to sell tiers and credits through
    `stripe` (the PRO and BUSINESS prices are seeded; webhooks signed with `secret`)."""
    return {
        **live_env,
        "STRIPE_SECRET_KEY": "sk_test_fake",
        "STRIPE_API_BASE": stripe.base_url,
        "STRIPE_WEBHOOK_SECRET": secret,
        "STRIPE_PRICE_PRO": stripe.state.seed_price("pro", 2000),
        "STRIPE_PRICE_BUSINESS": stripe.state.seed_price("business", 10000),
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "ENABLE_PLATFORM_PAYMENT": "true",
        "ENABLE_CREDIT": "true",
        "FRONTEND_BASE_URL": base_url,
    }
