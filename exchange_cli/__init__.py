"""`exchange`: the exchange's command-line client (no Django; it speaks the
public REST API under /api/v1/, the same calls the OpenAPI schema documents).

Configuration, first found wins: `--url` / `--token`; the environment
(`EXCHANGE_URL`, `EXCHANGE_TOKEN`); the config file (`--config`, else
`$EXCHANGE_CONFIG`, else `~/.config/exchange/config.json`), which
`exchange login` writes."""

__version__ = "0.1.0"
