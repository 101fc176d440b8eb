"""The `exchange` command without a server: prices in yuan to fen, where the
URL and token come from, what `--explain` prints, and how an error reads."""

import argparse
import io
import json

import httpx
import pytest

from exchange_cli.commands import fen, main, yuan
from exchange_cli.config import settings_load


@pytest.mark.parametrize(("text", "amount"), [("25", 2_500), ("25.5", 2_550), ("0.01", 1)])
def test_prices_are_typed_in_yuan_and_sent_in_fen(text, amount):
    assert fen(text) == amount


@pytest.mark.parametrize("text", ["25.001", "0", "-1", "abc", "nan"])
def test_a_price_the_exchange_cannot_take_is_refused_before_any_call(text):
    with pytest.raises(argparse.ArgumentTypeError):
        fen(text)


def test_amounts_print_in_yuan_to_the_fen():
    assert (yuan(1_234_567), yuan(-5), yuan(None)) == ("¥12,345.67", "-¥0.05", "-")


def test_flags_beat_the_environment_which_beats_the_config_file(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"url": "http://file", "token": "file-token"}))
    monkeypatch.delenv("EXCHANGE_URL", raising=False)
    monkeypatch.delenv("EXCHANGE_TOKEN", raising=False)
    assert settings_load(url=None, token=None, path=path).token == "file-token"
    monkeypatch.setenv("EXCHANGE_TOKEN", "env-token")
    monkeypatch.setenv("EXCHANGE_URL", "http://env/")
    loaded = settings_load(url=None, token=None, path=path)
    assert (loaded.url, loaded.token) == ("http://env", "env-token")
    assert settings_load(url="http://flag", token="flag", path=path).token == "flag"


def test_explain_prints_each_call_with_the_token_masked(capsys, tmp_path):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            400,
            json={"detail": "The order is not valid.", "errors": {"start_by": ["In the past."]}},
        )

    config = tmp_path / "none.json"
    status = main(
        ["--url", "http://x", "--token", "secret-token-1234", "--config", str(config)]
        + ["order", "place", "--gpus", "2", "--hours", "3", "--max-price", "25.50", "--explain"]
        + ["--idempotency-key", "k1"],
        out=io.StringIO(),
        transport=httpx.MockTransport(answer),
    )

    assert status == 1
    body = json.loads(seen[0].content)
    assert (body["max_price_amount"], body["gpu_count"], body["time_in_force"]) == (
        2_550,
        2,
        "good_till",
    )
    assert seen[0].headers["Idempotency-Key"] == "k1"
    err = capsys.readouterr().err
    assert "> POST http://x/api/v1/orders/" in err
    assert "Token ****1234" in err and "secret-token" not in err
    assert "< 400 Bad Request" in err
    assert "HTTP 400: The order is not valid.\n  start_by: In the past." in err


def test_the_index_command_prints_the_published_rows_in_yuan(tmp_path):
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "method_version": "v1",
                "rows": [
                    {
                        "day": "2026-06-01",
                        "gpu_class": "imported-t1-m1",
                        "currency": "CNY",
                        "vwap_gpu_hour": "2153.85",
                        "vwap_pflops_hour": "2176.92",
                        "gpu_hours": "52.00",
                        "pflops_hours": "51.45",
                        "notional_amount": 112000,
                        "trades": 3,
                    }
                ],
            },
        )

    out = io.StringIO()
    status = main(
        ["--url", "http://x", "--config", str(tmp_path / "c.json"), "index"]
        + ["--gpu-class", "imported-t1-m1", "--since", "2026-06-01"],
        out=out,
        transport=httpx.MockTransport(answer),
    )

    assert status == 0
    assert seen[0].url.params["gpu_class"] == "imported-t1-m1"
    assert seen[0].url.params["since"] == "2026-06-01"
    text = out.getvalue()
    assert "method v1" in text
    assert "2026-06-01  imported-t1-m1  ¥21.54" in text and "¥21.77" in text
