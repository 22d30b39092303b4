import pytest

from offpeak.errors import WebhookUrlForbidden
from offpeak.events.delivery import DELIVERED, FAILED, outcome, post
from offpeak.events.guard import check_webhook, refusal
from tests.offpeak.events.conftest import PUBLIC, Net
from tests.utils.webhook_receiver import webhook_receiver

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/hook",
    "http://10.0.0.1/hook",
    "http://172.16.0.5/hook",
    "http://192.168.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://0.0.0.0/hook",
    "http://100.64.0.1/hook",
    "https://loopy.test/hook",
    "https://intranet.test/hook",
    "https://mixed.test/hook",
    "https://metadata.test/hook",
    "https://v6local.test/hook",
]


@pytest.mark.parametrize("url", REFUSED)
def test_submission_refuses_non_public_addresses(net: Net, url: str) -> None:
    with pytest.raises(WebhookUrlForbidden) as caught:
        net.guard().check(url)
    assert caught.value.code == "webhook_url_forbidden"
    assert net.connects == []


@pytest.mark.parametrize("url", REFUSED)
def test_delivery_refuses_non_public_addresses_without_connecting(net: Net, url: str) -> None:
    answer = post(net.guard(), url, {}, b"{}", timeout=1)
    assert answer.status is None and not answer.transient
    assert "webhook_url_forbidden" in (answer.error or "")
    assert outcome(answer) == FAILED
    assert net.connects == []


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/", "https://metadata.test/", "http://[fd00:ec2::254]/"]
)
def test_metadata_addresses_stay_refused_when_private_ones_are_allowed(net: Net, url: str) -> None:
    with pytest.raises(WebhookUrlForbidden, match="metadata"):
        net.guard(allow_private=True).check(url)


def test_public_https_url_is_accepted(net: Net) -> None:
    target = net.guard().check("https://public.test:8443/in?x=1")
    assert (target.host, target.port, target.path) == ("public.test", 8443, "/in?x=1")
    assert net.lookups == ["public.test"] and net.connects == []


def test_plain_http_needs_the_switch(net: Net) -> None:
    with pytest.raises(WebhookUrlForbidden) as caught:
        net.guard().check("http://public.test/hook")
    assert caught.value.code == "webhook_url_insecure"
    net.guard(allow_private=True).check("http://public.test/hook")


@pytest.mark.parametrize(
    "url", ["ftp://public.test/x", "https://user:pw@public.test/x", "https:///x", "http://[::1"]
)
def test_malformed_urls_are_invalid(net: Net, url: str) -> None:
    with pytest.raises(WebhookUrlForbidden) as caught:
        net.guard().check(url)
    assert caught.value.code == "webhook_url_invalid"


def test_the_switch_lets_local_receivers_in(net: Net) -> None:
    for url in (
        "http://127.0.0.1:9/h",
        "http://10.0.0.1/h",
        "http://[::1]/h",
        "http://loopy.test/",
    ):
        net.guard(allow_private=True).check(url)


def test_check_webhook_accepts_none_and_refuses_loopback() -> None:
    check_webhook(None, allow_private=False)
    with pytest.raises(WebhookUrlForbidden):
        check_webhook("http://127.0.0.1/hook", allow_private=False)  # a literal: no lookup


def test_refusal_reasons_name_the_kind_of_address() -> None:
    assert refusal("127.0.0.1", allow_private=False) == "a loopback address"
    assert refusal("10.0.0.1", allow_private=False) == "a private address"
    assert refusal("169.254.1.1", allow_private=False) == "a link-local address"
    assert refusal("169.254.169.254", allow_private=True) == "a cloud metadata address"
    assert refusal(PUBLIC, allow_private=False) is None


def test_dns_that_changes_after_submission_is_caught_at_delivery(net: Net) -> None:
    net.names["flip.test"] = [PUBLIC]
    net.guard().check("https://flip.test/hook")
    net.names["flip.test"] = ["10.9.8.7"]  # rebinding
    answer = post(net.guard(), "https://flip.test/hook", {}, b"{}", timeout=1)
    assert outcome(answer) == FAILED and net.connects == []


def test_delivery_connects_to_the_address_it_vetted(net: Net) -> None:
    # The public host is played by a loopback receiver: the guard must hand the vetted
    # address to connect, which routes it there; no packet goes anywhere else.
    with webhook_receiver() as receiver:
        net.public_stand_in = ("127.0.0.1", receiver.port)
        answer = post(net.guard(allow_private=True), "http://public.test/in", {}, b"{}", 2)
        assert outcome(answer) == DELIVERED
        assert net.connects == [PUBLIC]
        assert [r.path for r in receiver.received] == ["/in"]
        assert receiver.received[0].headers["host"] == "public.test"


@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://public.test/"],
)
def test_redirects_are_not_followed(net: Net, location: str) -> None:
    net.loopback_ok = True
    with webhook_receiver() as receiver:
        receiver.answer("/hook", (302, {"Location": location}))
        answer = post(net.guard(allow_private=True), receiver.url(), {}, b"{}", 2)
        assert answer.status == 302 and outcome(answer) == FAILED
        assert net.connects == ["127.0.0.1"]
        assert len(receiver.received) == 1
